"""The pretrain stage's launcher: model/'s training under torchrun, driven from a stage run.

The network, the training loop, checkpoints and export live in model/ (which imports nothing of
tasks/); tasks/stages.py calls model.train.pretrain in process for one process, and torchrun.py starts
torchrun for several and forwards rank 0's metrics. Must not import MLflow or Prefect.
"""
