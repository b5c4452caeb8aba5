"""The deterministic simulator (issue 3). Nothing here yet."""
