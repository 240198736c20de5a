"""prefect-trigger: a Bitbucket Pipelines pipe that runs Prefect deployments for a commit."""

__version__ = "0.1.0"
