"""EC2: instances that run their training user data locally."""
