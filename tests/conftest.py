pytest_plugins = ["fix_env", "fix_db", "fix_models", "fix_roles", "fix_corpus"]
