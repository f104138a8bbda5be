pytest_plugins = ["fix_db", "fix_models", "fix_roles"]
