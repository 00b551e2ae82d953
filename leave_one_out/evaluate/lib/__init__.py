"""Array functions of evaluation that read no config: classifiers on frozen features, common corruptions, the MoCo linear protocol."""
