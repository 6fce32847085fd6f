"""Self-supervised monocular depth training on fastdepth: models, data, objective, loop, evaluation."""
