pytest_plugins = ["fix_db"]
