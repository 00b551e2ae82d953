"""What a pretraining run does around the train step: the loop, checkpoints, the workdir, logs, online monitoring."""
