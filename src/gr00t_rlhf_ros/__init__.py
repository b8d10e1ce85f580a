"""gr00t_rlhf_ros: the on-robot half of gr00t_rlhf (ROS 2 nodes, simulator, bag conversion)."""
