"""Build of the native ring core; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

native = Extension(
    "laminar_polars._native",
    sources=["native/_native.pyx", "native/lp_ring.c", "native/lp_columns.c",
             "native/lp_crc32c.c", "native/nanoarrow/nanoarrow.c"],
    include_dirs=["native"],
    extra_compile_args=["-O3", "-std=gnu11", "-Wno-unused-function"],
)

setup(ext_modules=cythonize([native], compiler_directives={"language_level": "3"}))
