"""Sluice's ML library: feature pipelines, candidate estimators and search, ONNX export, parity, metrics.

Ships as the TrainingLayer (see training/Makefile) next to the sluice layer and the ML deps layer.
"""

from training.train import TrainedModel, run_training, train_model

__all__ = ["TrainedModel", "run_training", "train_model"]
