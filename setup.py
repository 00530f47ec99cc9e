import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# The one place of the version is caravand/__init__.py: read, never imported
# (importing it would need boto3 and the rest before they are installed).
init = (here / "caravand" / "__init__.py").read_text(encoding="utf-8")
version = re.search(r'^__version__ = "([^"]+)"$', init, re.M).group(1)

setup(
    name="caravand",
    version=version,
    description="A supervisor daemon for AWS Simple Workflow (SWF) deciders and activity workers",
    long_description=(here / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["caravand", "caravand.*"]),
    # PEP 561: the package's annotations (its plug-in contracts among them) are for type checkers too.
    package_data={"caravand": ["py.typed"]},
    install_requires=[
        "boto3>=1.34",
        "PasteDeploy>=3.1,<4",
        "setproctitle>=1.3",
        "python-daemon>=3.0",
        "prometheus-client>=0.20",
    ],
    extras_require={
        # moto's SWF emulator, served over HTTP. moto's own "server" extra
        # pulls in docker, cfn-lint and more for other services; serving SWF
        # needs only flask and flask-cors beside moto. Pinned: caravand.emulator
        # patches this moto's SWF (and refuses to start on one without a function it patches).
        "local": ["moto==5.2.5", "flask", "flask-cors"],
        "test": [
            "moto==5.2.5",
            "flask",
            "flask-cors",
            "pytest>=8",
            "awscli>=1.32",
            "ruff",
            # tests/test_dashboards.py reads etc/prometheus/*.yml.
            "pyyaml",
            # The type check of .ci/run: boto3's and botocore's own stubs, with SWF's client.
            "mypy",
            "boto3-stubs[swf]",
        ],
    },
    entry_points={
        "console_scripts": [
            "caravanctl = caravand.ctl:main",
            "caravan-start = caravand.ctl:seed_start",
            "caravan-signal = caravand.ctl:seed_signal",
            "caravan-terminate = caravand.ctl:seed_terminate",
            "caravan-list = caravand.ctl:seed_list",
            "caravan-domain-register = caravand.ctl:seed_domain_register",
            "caravan-domain-list = caravand.ctl:seed_domain_list",
            "caravan-decider = caravand.standalone:decider_main",
            "caravan-activity = caravand.standalone:activity_main",
            "caravand = caravand.main:main",
        ],
        "caravand.pool_factory": [
            "decider = caravand.pools:decider",
            "activity = caravand.pools:activity",
        ],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Environment :: No Input/Output (Daemon)",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Distributed Computing",
    ],
)
