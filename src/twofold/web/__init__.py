"""The control panel: a local web front end over the same engines and jobs as the CLI."""
