"""What watches in the background, every few seconds, under a lease: the forged-branch
watch, the rule follower (rule-made id lists), the recorded replication states, and what
they read with: `_changes` checkpoints and each server's `_db_updates`. It may import
every other package of the domain but the wiring; none of them imports it.
"""
