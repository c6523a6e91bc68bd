"""Service Quotas on the local cloud: the account profile's quotas, listed and enforced."""
