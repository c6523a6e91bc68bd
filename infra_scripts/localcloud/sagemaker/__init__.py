"""SageMaker: training and tuning jobs as local processes; endpoints and their instances."""
