"""Read the repository URL from pyproject.toml (its only home) into the site's config.

The Colab button of every notebook page is built from ``extra.colab_base``. We do not set
MkDocs' ``repo_url``: Material would then fetch star counts from api.github.com on every
page, and the course must work in a classroom with no network.
"""
import pathlib
import tomllib


def on_config(config):
    pyproject = pathlib.Path(config.config_file_path).parent / "pyproject.toml"
    with open(pyproject, "rb") as f:
        url = tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    config.extra["repository"] = url
    config.extra["colab_base"] = f"{colab}/blob/main/lessons"
    return config
