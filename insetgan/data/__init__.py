"""Dataset preparation: full-body, face and shoe training sets from photos and label maps."""
from insetgan.data.labels import Component, LabelSet, connected_components, load_label_map, shoe_components
from insetgan.data.prepare import (
                                   BodiesConfig,
                                   DatasetWriter,
                                   FacesConfig,
                                   ShoesConfig,
                                   body_sample,
                                   list_images,
                                   prepare_bodies,
                                   prepare_faces,
                                   prepare_shoes,
)
from insetgan.data.windows import (
                                   face_box_from_labels,
                                   face_box_from_landmarks,
                                   find_landmarks,
                                   median_box,
                                   person_window,
                                   to_canvas,
)

__all__ = ["BodiesConfig", "Component", "DatasetWriter", "FacesConfig", "LabelSet", "ShoesConfig", "body_sample",
           "connected_components", "face_box_from_labels", "face_box_from_landmarks", "find_landmarks",
           "list_images", "load_label_map", "median_box", "person_window", "prepare_bodies", "prepare_faces",
           "prepare_shoes", "shoe_components", "to_canvas"]
