"""Lambda: Invoke runs deployed code in warm execution environments; provisioned concurrency."""
