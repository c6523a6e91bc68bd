"""Step Functions: RedriveExecution on moto's interpreter."""
