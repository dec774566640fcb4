"""The simulated G1 (MuJoCo): scene, physics, the robot's DDS side, head camera, task and scripted expert.

No ROS here (the nodes are dit4dit_policy.nodes.sim_node and expert_node):
- scene.py: the model built from urdf/g1_29dof.urdf with a table, a block, actuators and the camera;
- physics.py: G1Sim, stepped by the caller under a g1.robot_side.MotorLaw;
- simulator.py: SimulatedG1, G1Sim on DDS in real time (shares g1.robot_side with the loopback robot);
- process.py: SimulatedG1 in a child process; renderer.py / camera.py: headless frames;
- task.py: reach and touch the block; expert.py: the scripted expert; harness.py: the expert
  through the safety limiter on simulated time (benchmark, tests).
"""
