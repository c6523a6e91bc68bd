"""What every service of the local cloud shares: the server and its extension API, processes
and ports, S3 and CloudWatch Logs helpers, the signed-request scope and moto field updates."""
