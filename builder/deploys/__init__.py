"""From an image-pushed event to deployments: rules, targets, environments, promotions."""
