"""3D outputs: the objects' point cloud (sensor_msgs/PointCloud2) and RViz markers (MarkerArray)."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sam2_ros.core.geometry import Object3D, cloud_array, voxel_downsample
from sam2_ros.core.render import color_of
from sam2_ros.ros.conversions import byte_array
from sam2_ros.ros.depth import DepthScene
from sam2_ros.ros.vision import box_3d, class_name, header_3d
from sam2_ros_interfaces.msg import SegmentationResult

_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def cloud_message(scene: DepthScene | None, solids: dict[int, Object3D], voxel: float,
                  rgb: np.ndarray | None = None, colour_header: Header | None = None) -> PointCloud2:
    """Every object's points in the depth frame: x y z, object_id and (with the colour image) rgb.

    A point's colour is that of the colour pixel its depth pixel sees (the registration).
    Without a depth frame the cloud is empty, with the colour frame's header.
    """
    ids = sorted(solids) if scene is not None else []
    parts = [voxel_downsample(solids[i].points, np.full(solids[i].count, i, np.uint32), voxel,
                              None if rgb is None else solids[i].colours(rgb, scene.registration))
             for i in ids]  # object by object: each spans few voxels, so its keys are counted without a sort
    points = np.concatenate([np.zeros((0, 3), np.float32)] + [p[0] for p in parts])
    owner = np.concatenate([np.zeros(0, np.uint32)] + [p[1] for p in parts])
    colours = None if rgb is None else np.concatenate([np.zeros((0, 3), np.uint8)] + [p[2] for p in parts])
    cloud = cloud_array(points, owner, colours)
    fields = [PointField(name=name, offset=offset, datatype=_FIELD_TYPES[dtype.str], count=1)
              for name, (dtype, offset) in cloud.dtype.fields.items()]
    if rgb is not None:
        fields[-1].datatype = PointField.FLOAT32  # PCL and RViz read packed rgb as float32 bits
    header = scene.header if scene is not None else colour_header
    return PointCloud2(header=header, height=1, width=len(cloud), fields=fields, is_bigendian=False,
                       point_step=cloud.dtype.itemsize, row_step=cloud.nbytes, data=byte_array(cloud),
                       is_dense=True)


def marker_array(result: SegmentationResult) -> MarkerArray:
    """Build a box and a label per object with 3D; DELETEALL first, so removed objects leave no ghosts."""
    header = header_3d(result)
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for obj in result.objects:
        if not obj.has_3d:
            continue
        centre, size = box_3d(obj)
        r, g, b = (c / 255 for c in color_of(obj.object_id))
        box = Marker(header=header, ns="sam2_objects", id=obj.object_id, type=Marker.CUBE, action=Marker.ADD,
                     color=ColorRGBA(r=r, g=g, b=b, a=0.4), lifetime=Duration(sec=0), frame_locked=False)
        box.pose.position.x, box.pose.position.y, box.pose.position.z = centre
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (max(s, 0.005) for s in size)  # RViz hides a flat cube
        text = Marker(header=header, ns="sam2_labels", id=obj.object_id, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=f"{obj.object_id}: {class_name(obj)}",
                      color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        text.pose.position.x, text.pose.position.y = centre[0], obj.min_3d.y - 0.03  # above (y points down)
        text.pose.position.z = centre[2]
        text.pose.orientation.w = 1.0
        text.scale.z = 0.05
        markers += [box, text]
    return MarkerArray(markers=markers)
