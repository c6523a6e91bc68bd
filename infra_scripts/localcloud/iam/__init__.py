"""IAM: authorization of the requests the local cloud serves."""
