"""Ad channels (/v1/ad-channels): the labels the tenant's numbers carry and what each
channel costs per month, for the cost figures of the channels report."""
