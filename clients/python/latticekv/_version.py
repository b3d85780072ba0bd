# SPDX-License-Identifier: Apache-2.0
"""The package's version: the project version of CMakeLists.txt (a test checks they agree)."""

__version__ = "0.1.0"
