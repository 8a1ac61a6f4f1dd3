"""Build hook: the wheel carries the top-level `schemas/` as package data in `conformance/schemas/`.

Everything else is declared in pyproject.toml. The schemas stay at the top level of the source tree,
where readers of the project look for them; the package reads them through conformance.schemafiles.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SCHEMAS = Path(__file__).resolve().parent / "schemas"


class BuildPyWithSchemas(build_py):
    def run(self) -> None:
        super().run()
        if not SCHEMAS.is_dir():  # an sdist without schemas/ would give a wheel that cannot validate anything
            raise FileNotFoundError(f"{SCHEMAS} is missing: it must be shipped in the source distribution")
        target = Path(self.build_lib) / "conformance" / "schemas"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(SCHEMAS.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithSchemas})
