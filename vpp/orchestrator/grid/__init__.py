"""The grid service: frequency events, response allocation, compliance and its process."""
