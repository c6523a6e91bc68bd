"""Application Auto Scaling: target tracking applied to SageMaker variants."""
