"""Packaging for MiniLLM, read from settings.ini (nbdev 2 layout)."""
from configparser import ConfigParser
import setuptools, shlex

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable"]
lic = licenses[cfg["license"]]
min_python = cfg["min_python"]
py_versions = [v for v in "3.10 3.11 3.12 3.13".split()
               if tuple(map(int, v.split("."))) >= tuple(map(int, min_python.split(".")))]

requirements = shlex.split(cfg.get("requirements", ""))
dev_requirements = shlex.split(cfg.get("dev_requirements", ""))
console_scripts = cfg.get("console_scripts", "").split()

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    license=lic[0],
    classifiers=["Development Status :: " + statuses[int(cfg["status"])],
                 "Intended Audience :: " + cfg["audience"].title(),
                 "Natural Language :: " + cfg["language"].title(),
                 "License :: " + lic[1]] + ["Programming Language :: Python :: " + v for v in py_versions],
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=["minillm", "minillm.*"]),
    # The default tokenizer ships inside the wheel.
    package_data={"minillm": ["assets/tokenizer/*"]},
    include_package_data=True,
    install_requires=requirements,
    extras_require={"dev": dev_requirements},
    python_requires=">=" + min_python,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    zip_safe=False,
    entry_points={"console_scripts": console_scripts, "nbdev": [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"]},
    author=cfg["author"], author_email=cfg["author_email"], description=cfg["description"],
    keywords=cfg["keywords"],
)
