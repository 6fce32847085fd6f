"""The warp's projection of depth maps into source views in plain PyTorch, with the gradient the
fused warp kernels compute (csrc/warp.cuh: geometry_backward, depth_shares, ray_backward) in
place of autograd's: used by the cost volume's fused path where its geometry needs a gradient.

Autograd through the projection takes the depth gradient as d loss / d (X, Y, Z) . ray, which
cancels as the point moves away from the translation t (the cost volume's float32 hypothesis
gradient: 4.8e-3 off float64 at hypotheses 1e4 to 1e5, translations 0.3), and leaves the rounding
of a cancellation in the pose's last row. Here, as in the kernels, where z is divided the depth
share of a source whose |t| < |X| (max norms) is -g_q . t / d, and the gradient of w is 0 (the
projection ignores w there). The forward is
:func:`fastdepth.reference.warp.project`'s (Kornia's conventions; the ray not normalised), in the
dtype of the inputs. Only the intermediates' inputs are kept for the backward, which recomputes them.
"""

from __future__ import annotations

import torch

from fastdepth.conventions import DIVIDE_EPS
from fastdepth.reference import warp as reference_warp


def _safe_inverse(den: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's ``1 / den`` (1 where undivided) and where ``den`` is divided."""
    return reference_warp.safe_inverse(den), den.abs() > DIVIDE_EPS


# Helpers rather than comprehensions in the backward: a comprehension would make its locals closure
# cells, whose del torch.compile cannot trace.
def _scaled(values, factor, keep=None):
    return [v * factor if keep is None else torch.where(keep, v * factor, 0.0) for v in values]


def _outer_sums(gq, point):
    """d/dT[i, j] = gq[i] * (X, Y, Z, 1)[j] summed over the pixels: (N, S, 4, 4)."""
    return torch.stack([torch.stack([(g * c).sum((2, 3)) for c in point] + [g.sum((2, 3))], -1) for g in gq], -2)


def _point_grads(gq, T):
    """d/d (X, Y, Z) of each source from d/d (q, w): sum_i gq[i] T[i][j], j < 3."""
    return [gq[0] * T[0][j] + gq[1] * T[1][j] + gq[2] * T[2][j] + gq[3] * T[3][j] for j in range(3)]


class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, depth, poses, K):
        u, v, _, finite = reference_warp.project(depth, poses, K, dtype=depth.dtype)
        ctx.save_for_backward(depth, poses, K, finite)
        ctx.mark_non_differentiable(finite)
        return u, v, finite

    @staticmethod
    def backward(ctx, grad_u, grad_v, _):
        # the temporaries (B * D * S * h * w values each) are dropped as soon as they are used: the
        # step's peak memory is then below autograd's (B=2 C=64 D=32 48x160: 57 to 76 MB, not 83)
        depth, poses, K, finite = ctx.saved_tensors
        h, w = depth.shape[-2:]
        fx, fy, cx, cy = reference_warp.intrinsics(K)
        col = torch.arange(w, dtype=depth.dtype, device=depth.device).view(1, 1, 1, w)
        row = torch.arange(h, dtype=depth.dtype, device=depth.device).view(1, 1, h, 1)
        tx, ty = (col - cx) / fx, (row - cy) / fy  # the ray (tx, ty, 1)
        d = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
        point = (d * tx, d * ty, d)
        T = [[poses[:, :, i, j, None, None] for j in range(4)] for i in range(4)]
        q = [T[i][0] * point[0] + T[i][1] * point[1] + T[i][2] * point[2] + T[i][3] for i in range(4)]
        inv_w, w_ok = _safe_inverse(q.pop())
        # the intermediates of dropped pixels zeroed, so that 0 * inf never reaches a sum
        p = _scaled(q, inv_w, finite)
        del q
        inv_z, z_ok = _safe_inverse(p[2])
        x, y = p[0] * inv_z, p[1] * inv_z
        gu = torch.where(finite, grad_u, 0.0)
        gv = torch.where(finite, grad_v, 0.0)
        grad_K = torch.zeros_like(K)
        grad_K[:, 0, 0] = (gu * x).sum((1, 2, 3))
        grad_K[:, 1, 1] = (gv * y).sum((1, 2, 3))
        grad_K[:, 0, 2] = gu.sum((1, 2, 3))
        grad_K[:, 1, 2] = gv.sum((1, 2, 3))
        # projected pixel -> normalised camera coordinates -> point after /w -> homogeneous point q, w
        gx, gy = fx * gu, fy * gv
        del gu, gv
        gpz = torch.where(z_ok, -(gx * x + gy * y) * inv_z, 0.0)
        del x, y
        gp = (gx * inv_z, gy * inv_z, gpz)
        del gx, gy, gpz, inv_z
        gw = torch.where(w_ok & ~z_ok, -(gp[0] * p[0] + gp[1] * p[1] + gp[2] * p[2]) * inv_w, 0.0)
        del p, w_ok
        gq = [*_scaled(gp, inv_w), gw]
        del gp, gw, inv_w
        grad_poses = _outer_sums(gq, point)
        # the depth's shares (depth_shares): along the ray through d/d (X, Y, Z), or -gq . t
        t_max = torch.maximum(torch.maximum(T[0][3].abs(), T[1][3].abs()), T[2][3].abs())
        x_max = torch.maximum(torch.maximum(point[0].abs(), point[1].abs()), point[2].abs())
        parallax = z_ok & (t_max < x_max)
        del z_ok
        across = torch.where(parallax, -(gq[0] * T[0][3] + gq[1] * T[1][3] + gq[2] * T[2][3]), 0.0)
        grad_depth = across.sum(1, keepdim=True) / torch.where(d != 0, d, 1.0)
        del across
        g_point = _point_grads(gq, T)
        del gq
        grad_depth += torch.where(parallax, 0.0, g_point[0] * tx + g_point[1] * ty + g_point[2]).sum(1, keepdim=True)
        grad_depth = torch.where(torch.isfinite(depth), grad_depth, 0.0)
        # the ray's share of K
        gtx = d * g_point[0].sum(1, keepdim=True)
        gty = d * g_point[1].sum(1, keepdim=True)
        grad_K[:, 0, 0] -= (gtx * tx / fx).sum((1, 2, 3))
        grad_K[:, 1, 1] -= (gty * ty / fy).sum((1, 2, 3))
        grad_K[:, 0, 2] -= (gtx / fx).sum((1, 2, 3))
        grad_K[:, 1, 2] -= (gty / fy).sum((1, 2, 3))
        return grad_depth, grad_poses, grad_K


def project(depth: torch.Tensor, poses: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(u, v, finite)``, each (N, S, h, w): :func:`fastdepth.reference.warp.project` of depth
    (N, 1, h, w) with poses (N, S, 4, 4) and K (N, 3, 3), all one float dtype, the computation's;
    differentiable in depth, poses and K with the fused kernels' gradient (see the module docstring)."""
    return _Projection.apply(depth, poses, K)
