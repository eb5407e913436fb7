"""Real datasets (TRI-PD, KITTI, MOVi-E) and plain video folders converted to clip shards
(``convert``), with their mask-id conventions (``mask_ids``) and moving flags derived from GT and
flow for eval splits that have none (``moving_flags``)."""
