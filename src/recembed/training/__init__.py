"""Training: negative samplers, losses, tasks (loss + sampling + batches), checkpoints and THE loop."""
