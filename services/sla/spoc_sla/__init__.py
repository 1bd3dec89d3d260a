"""Spoc sla: business-hours clocks per ticket and metric, with warnings and breaches."""
