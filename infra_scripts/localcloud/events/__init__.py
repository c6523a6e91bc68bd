"""EventBridge: S3 object-created events delivered to Lambda and Step Functions targets."""
