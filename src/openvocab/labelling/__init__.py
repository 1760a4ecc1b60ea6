"""Labels for unlabelled or sparsely labelled videos: the synthetic label pipeline of open-vocabulary multi-label
(appendix I) -- captioners (:mod:`~openvocab.labelling.captioners`) and the four steps
(:mod:`~openvocab.labelling.synthesis`). An application of the library, beside ``eval`` and ``features``."""
