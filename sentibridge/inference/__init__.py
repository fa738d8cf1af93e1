"""Prediction: label scoring, batch prediction files, evaluation and the served MLflow model."""
