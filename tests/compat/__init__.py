"""The compatibility tier: the real pipe against old Prefect servers, each from its own venv."""
