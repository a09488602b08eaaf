"""Install the sam2_ros Python package, its launch and config files, and its tools."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'sam2_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='sam2_ros maintainers',
    maintainer_email='maintainers@sam2-ros.dev',
    description='ROS 2 node for Meta SAM 2: prompted segmentation and tracking.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'sam2_segmenter_node = sam2_ros.ros.main:main',
            'sam2_bench = sam2_ros.tools.bench:main',
            'sam2_make_sample_bag = sam2_ros.tools.make_sample_bag:main',
            'sam2_replay = sam2_ros.tools.replay:main',
            'sam2_render = sam2_ros.tools.render_bag:main',
            'sam2_export = sam2_ros.tools.export:main',
            'sam2_fetch = sam2_ros.tools.fetch:main',
        ],
    },
)
