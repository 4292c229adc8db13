"""The Bytewax dataflow. Domain logic lives in pure modules; dataflow.py only wires them."""
