"""insetgan: compose full-body humans from several pretrained StyleGAN2 generators."""
from setuptools import setup

setup(
    name="insetgan",
    version="0.1.0",
    description="InsetGAN: full-body human composition from canvas and inset StyleGAN2 generators",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["insetgan", "networks", "torch_utils", "torch_utils.ops"],
    install_requires=[
        "torch>=2.2",
        "numpy>=1.22",
        "safetensors>=0.4",
        "click>=8.1",
        "pillow>=9.0",
        "tqdm>=4.60",
        "ninja>=1.10",
        "pyyaml>=5.4",
    ],
    package_data={"torch_utils.ops": ["csrc/*.cpp", "csrc/*.cu", "csrc/*.h"],
                  "insetgan": ["assets/weights/*", "assets/lpips/*", "assets/models/*"]},
    extras_require={
        # dlib face detection + landmarks (the models come from face_recognition_models).
        "face": ["dlib-bin>=19.24", "face_recognition_models>=0.3"],
        "test": ["pytest>=7", "dlib-bin>=19.24", "face_recognition_models>=0.3"],
    },
    entry_points={"console_scripts": ["insetgan=insetgan.cli:main"]},
)
