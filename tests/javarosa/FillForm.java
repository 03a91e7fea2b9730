/*
 * Fills compiled XForms with ODK's own form engine (JavaRosa, as bundled in ODK Validate) and
 * writes each interview as ODK Collect stores it: instances/<name>/<name>.xml, serialised by the
 * engine (relevant notes as empty elements, non-relevant questions left out).
 *
 * Input (UTF-8, one directive per line; values escape \\ \n \r \t):
 *   FORM <path of the compiled XForm>        the form of the following submissions
 *   SUB <path of the instance file to write>  a new interview
 *   FORCE <absolute xpath>\t<value>           a value the device drew (random(), uuid())
 *   ANSWER <key>\t<value>                     an answer: key = steps name[position]/…/field
 *   END                                       serialise the interview
 * Prints one line per submission: the file, and how many answers the engine refused.
 */

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.javarosa.core.model.FormDef;
import org.javarosa.core.model.FormIndex;
import org.javarosa.core.model.data.AnswerDataFactory;
import org.javarosa.core.model.data.IAnswerData;
import org.javarosa.core.model.data.StringData;
import org.javarosa.core.model.data.UncastData;
import org.javarosa.core.model.instance.InstanceInitializationFactory;
import org.javarosa.core.model.instance.TreeReference;
import org.javarosa.core.services.IPropertyManager;
import org.javarosa.core.services.PropertyManager;
import org.javarosa.core.services.properties.IPropertyRules;
import org.javarosa.form.api.FormEntryController;
import org.javarosa.form.api.FormEntryModel;
import org.javarosa.form.api.FormEntryPrompt;
import org.javarosa.model.xform.XFormSerializingVisitor;
import org.javarosa.model.xform.XFormsModule;
import org.javarosa.model.xform.XPathReference;
import org.javarosa.xform.util.XFormUtils;

public class FillForm {
    /** The device's properties, as Collect provides them (deviceid and the like). */
    static class DeviceProperties implements IPropertyManager {
        private final Map<String, List<String>> values = new HashMap<>();

        DeviceProperties() { values.put("deviceid", List.of("collect:FillForm0001")); }
        public List<String> getProperty(String name) { return values.get(name); }
        public void setProperty(String name, String value) { values.put(name, List.of(value)); }
        public void setProperty(String name, List<String> value) { values.put(name, value); }
        public String getSingularProperty(String name) {
            List<String> v = values.get(name);
            return v == null || v.isEmpty() ? null : v.get(0);
        }
        public void addRules(IPropertyRules rules) { }
        public List<IPropertyRules> getRules() { return new ArrayList<>(); }
    }

    static String unescape(String s) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                out.append(n == 'n' ? '\n' : n == 'r' ? '\r' : n == 't' ? '\t' : n);
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }

    /** steps below the root as name[position], the field itself without a position */
    static String key(TreeReference ref) {
        StringBuilder out = new StringBuilder();
        for (int i = 1; i < ref.size(); i++) {
            if (out.length() > 0) out.append('/');
            out.append(ref.getName(i));
            if (i < ref.size() - 1) out.append('[').append(Math.max(ref.getMultiplicity(i), 0) + 1).append(']');
        }
        return out.toString();
    }

    static int fill(String form, Path out, Map<String, String> forced, Map<String, String> answers)
            throws Exception {
        FormDef fd;
        try (FileInputStream in = new FileInputStream(form)) {
            fd = XFormUtils.getFormFromInputStream(in);
        }
        fd.initialize(true, new InstanceInitializationFactory());
        for (Map.Entry<String, String> e : forced.entrySet()) {
            TreeReference ref = (TreeReference) new XPathReference(e.getKey()).getReference();
            fd.setValue(new StringData(e.getValue()), ref, true);
        }
        FormEntryModel model = new FormEntryModel(fd);
        FormEntryController fec = new FormEntryController(model);
        int refused = 0;
        for (int event = fec.stepToNextEvent(); event != FormEntryController.EVENT_END_OF_FORM;
             event = fec.stepToNextEvent()) {
            if (event == FormEntryController.EVENT_PROMPT_NEW_REPEAT) {
                TreeReference ref = model.getFormIndex().getReference();
                String wanted = key(ref) + "[" + (ref.getMultiplicity(ref.size() - 1) + 1) + "]/";
                if (answers.keySet().stream().anyMatch(k -> k.startsWith(wanted))) fec.newRepeat();
                continue;
            }
            if (event != FormEntryController.EVENT_QUESTION) continue;
            FormEntryPrompt prompt = model.getQuestionPrompt();
            FormIndex index = model.getFormIndex();
            String value = answers.get(key(index.getReference()));
            if (value == null || prompt.isReadOnly()) continue;
            IAnswerData data = AnswerDataFactory.templateByDataType(prompt.getDataType())
                    .cast(new UncastData(value));
            if (fec.answerQuestion(index, data, true) != FormEntryController.ANSWER_OK) refused++;
        }
        for (Map.Entry<String, String> e : forced.entrySet()) {  // a draw is kept as drawn
            TreeReference ref = (TreeReference) new XPathReference(e.getKey()).getReference();
            fd.setValue(new StringData(e.getValue()), ref, true);
        }
        fd.postProcessInstance();
        byte[] xml = new XFormSerializingVisitor().serializeInstance(fd.getInstance());
        Files.createDirectories(out.getParent());
        Files.write(out, xml);
        return refused;
    }

    public static void main(String[] args) throws Exception {
        PropertyManager.setPropertyManager(new DeviceProperties());
        new XFormsModule().registerModule();  // as ODK Collect does at start-up (jr:choice-name)
        BufferedReader in = new BufferedReader(new InputStreamReader(
                new FileInputStream(args[0]), StandardCharsets.UTF_8));
        String form = null;
        Path out = null;
        Map<String, String> forced = new LinkedHashMap<>();
        Map<String, String> answers = new LinkedHashMap<>();
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            int space = line.indexOf(' ');
            String verb = space < 0 ? line : line.substring(0, space);
            String rest = space < 0 ? "" : line.substring(space + 1);
            int tab = rest.indexOf('\t');
            switch (verb) {
                case "FORM": form = rest; break;
                case "SUB": out = Paths.get(rest); forced.clear(); answers.clear(); break;
                case "FORCE": forced.put(rest.substring(0, tab), unescape(rest.substring(tab + 1))); break;
                case "ANSWER": answers.put(rest.substring(0, tab), unescape(rest.substring(tab + 1))); break;
                case "END":
                    int refused = fill(form, out, forced, answers);
                    System.out.println(out + "\t" + refused);
                    break;
                default: throw new IllegalArgumentException("unknown directive: " + verb);
            }
        }
    }
}
