"""Spoc notify: tells requesters and agents what happened, on the channel they agreed to."""
