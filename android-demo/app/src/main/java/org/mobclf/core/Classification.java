package org.mobclf.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/** The labels of one text: every label with its probability, most probable first, and the decided ones. */
public final class Classification {
    private final List<LabelScore> ranked;
    private final boolean byThreshold;

    Classification(List<LabelScore> scores, boolean byThreshold) {
        this.byThreshold = byThreshold;
        ranked = new ArrayList<LabelScore>(scores);
        Collections.sort(ranked, new Comparator<LabelScore>() {
            @Override
            public int compare(LabelScore a, LabelScore b) {
                return Float.compare(b.probability, a.probability);
            }
        });
    }

    /** Whether labels were decided by per-label thresholds (multi-label), not as the most probable one. */
    public boolean byThreshold() {
        return byThreshold;
    }

    /** All labels, most probable first. */
    public List<LabelScore> ranked() {
        return Collections.unmodifiableList(ranked);
    }

    /** The decided labels, most probable first. */
    public List<LabelScore> predicted() {
        List<LabelScore> predicted = new ArrayList<LabelScore>();
        for (LabelScore score : ranked) {
            if (score.predicted) {
                predicted.add(score);
            }
        }
        return predicted;
    }
}
