"""What buildhook tells others: commit statuses, subscriptions, outbound webhooks and their deliveries."""
