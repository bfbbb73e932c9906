package org.mobclf.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/** The labels of one text: every label with its probability, most probable first, and the decided ones. */
public final class Classification {
    private final List<LabelScore> ranked;

    Classification(List<LabelScore> scores) {
        ranked = new ArrayList<LabelScore>(scores);
        Collections.sort(ranked, new Comparator<LabelScore>() {
            @Override
            public int compare(LabelScore a, LabelScore b) {
                return Float.compare(b.probability, a.probability);
            }
        });
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
