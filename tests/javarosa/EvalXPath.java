/*
 * Evaluates XPath expressions with ODK's own form engine (JavaRosa, as bundled in ODK Validate)
 * and prints what the engine computes, so that dhsurvey's evaluator can be checked against it.
 *
 * Input (UTF-8, one directive per line; values escape \\ \n \r \t):
 *   MEDIA <folder>            where jr://file-csv/… and jr://file/… attachments are read from
 *   FORM <path of an XForm>   the form the next expressions are evaluated in (parsed, initialised)
 *   TZ <zone id>              the device's time zone for the next expressions (e.g. UTC)
 *   EVAL <id>\t<xpath>        evaluate with /data/cur as the context node
 * Prints one line per EVAL: id, the kind of the result (boolean, number, string, date, error),
 * and its value (numbers as Java prints a double, dates as local wall-clock time to the
 * millisecond, errors as the exception's class and message); values escaped as in the input.
 * A first line "TODAY yyyy-mm-dd" says which day today() was while the expressions ran.
 *
 * pulldata() is not part of JavaRosa (ODK Collect adds it): here it is what the ODK XForms spec
 * defines it as, the first item of the attached CSV whose key column equals the value as text,
 * looked up by the engine in the secondary instance instance('name') gives.
 */

import java.io.BufferedReader;
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.TimeZone;

import org.javarosa.core.model.FormDef;
import org.javarosa.core.model.condition.EvaluationContext;
import org.javarosa.core.model.condition.IFunctionHandler;
import org.javarosa.core.model.instance.InstanceInitializationFactory;
import org.javarosa.core.model.instance.TreeReference;
import org.javarosa.core.reference.PrefixedRootFactory;
import org.javarosa.core.reference.Reference;
import org.javarosa.core.reference.ReferenceManager;
import org.javarosa.model.xform.XFormsModule;
import org.javarosa.model.xform.XPathReference;
import org.javarosa.xform.util.XFormUtils;
import org.javarosa.xpath.XPathNodeset;
import org.javarosa.xpath.expr.XPathExpression;
import org.javarosa.xpath.expr.XPathFuncExpr;
import org.javarosa.xpath.parser.XPathSyntaxException;
import org.javarosa.xpath.XPathParseTool;

public class EvalXPath {
    static final DateTimeFormatter WALL = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS");

    /** A local file as a JavaRosa reference (what Collect's media folder provides). */
    static class FileRef implements Reference {
        private final File file;

        FileRef(File file) { this.file = file; }
        public boolean doesBinaryExist() { return file.exists(); }
        public OutputStream getOutputStream() { throw new UnsupportedOperationException(); }
        public InputStream getStream() throws java.io.IOException { return new FileInputStream(file); }
        public String getURI() { return "file://" + file.getAbsolutePath(); }
        public String getLocalURI() { return file.getAbsolutePath(); }
        public boolean isReadOnly() { return true; }
        public void remove() { throw new UnsupportedOperationException(); }
        public Reference[] probeAlternativeReferences() { return new Reference[0]; }
    }

    static void useMedia(String folder) {
        ReferenceManager manager = ReferenceManager.instance();
        manager.reset();
        for (String scheme : new String[] {"file-csv", "file"}) {
            manager.addReferenceFactory(new PrefixedRootFactory(new String[] {scheme + "/"}) {
                @Override
                protected Reference factory(String terminal, String uri) {
                    return new FileRef(new File(folder, terminal));
                }
            });
        }
    }

    /** pulldata(instance, column, key column, value), as the instance lookup it stands for. */
    static class PullData implements IFunctionHandler {
        private final FormDef form;

        PullData(FormDef form) { this.form = form; }
        public String getName() { return "pulldata"; }
        public List<Class[]> getPrototypes() { return new ArrayList<>(); }
        public boolean rawArgs() { return true; }
        public boolean realTime() { return false; }

        public Object eval(Object[] args, EvaluationContext ec) {
            if (args.length != 4) {
                throw new RuntimeException("pulldata() takes 4 arguments, got " + args.length);
            }
            String value = XPathFuncExpr.toString(args[3]);
            String literal = value.contains("'") ? "\"" + value + "\"" : "'" + value + "'";
            String path = "instance('" + XPathFuncExpr.toString(args[0]) + "')/root/item["
                    + XPathFuncExpr.toString(args[2]) + " = " + literal + "]/"
                    + XPathFuncExpr.toString(args[1]);
            try {
                XPathNodeset found = (XPathNodeset) XPathParseTool.parseXPath(path)
                        .eval(form.getMainInstance(), ec);
                return found.size() == 0 ? "" : XPathFuncExpr.toString(found.toArgList()[0]);
            } catch (XPathSyntaxException e) {
                throw new RuntimeException(e);
            }
        }
    }

    /** Values escaped one a line; a lone half of a surrogate pair as \\uXXXX. */
    static String escape(String s) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean paired = Character.isHighSurrogate(c) && i + 1 < s.length()
                    && Character.isLowSurrogate(s.charAt(i + 1));
            if (paired) {
                out.append(c).append(s.charAt(++i));
            } else if (Character.isSurrogate(c)) {
                out.append(String.format("\\u%04x", (int) c));
            } else if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
                out.append('\\').append(c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
            } else {
                out.append(c);
            }
        }
        return out.toString();
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

    static String describe(Object value) {
        if (value instanceof XPathNodeset) {
            XPathNodeset nodes = (XPathNodeset) value;
            if (nodes.size() == 1 || nodes.size() == 0) {
                return describe(nodes.unpack());
            }
            StringBuilder out = new StringBuilder("nodeset\t");
            for (Object v : nodes.toArgList()) out.append(escape(XPathFuncExpr.toString(v))).append(' ');
            return out.toString().trim();
        }
        if (value instanceof Boolean) return "boolean\t" + value;
        if (value instanceof Double) return "number\t" + Double.toString((Double) value);
        if (value instanceof String) return "string\t" + escape((String) value);
        if (value instanceof Date) {
            LocalDateTime wall = LocalDateTime.ofInstant(((Date) value).toInstant(), ZoneId.systemDefault());
            return "date\t" + wall.format(WALL);
        }
        return "other\t" + escape(String.valueOf(value));
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(
                new FileInputStream(args[0]), StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, true, "UTF-8");
        new XFormsModule().registerModule();  // as ODK Collect does at start-up (jr:choice-name)
        out.println("TODAY " + LocalDate.now());
        FormDef form = null;
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            int space = line.indexOf(' ');
            String verb = space < 0 ? line : line.substring(0, space);
            String rest = space < 0 ? "" : line.substring(space + 1);
            switch (verb) {
                case "MEDIA":
                    useMedia(rest);
                    break;
                case "TZ":
                    TimeZone.setDefault(TimeZone.getTimeZone(rest));
                    break;
                case "FORM":
                    try (FileInputStream xml = new FileInputStream(rest)) {
                        form = XFormUtils.getFormFromInputStream(xml);
                    }
                    form.initialize(false, new InstanceInitializationFactory());
                    form.getEvaluationContext().addFunctionHandler(new PullData(form));
                    break;
                case "EVAL":
                    int tab = rest.indexOf('\t');
                    String id = rest.substring(0, tab);
                    String result;
                    try {
                        XPathExpression expr = XPathParseTool.parseXPath(unescape(rest.substring(tab + 1)));
                        TreeReference cur = (TreeReference) new XPathReference("/data/cur").getReference();
                        EvaluationContext ec = new EvaluationContext(form.getEvaluationContext(), cur);
                        result = describe(expr.eval(form.getMainInstance(), ec));
                    } catch (Exception | StackOverflowError | NoClassDefFoundError e) {
                        result = "error\t" + escape(e.getClass().getSimpleName() + ": " + e.getMessage());
                    }
                    out.println(id + "\t" + result);
                    break;
                default:
                    throw new IllegalArgumentException("unknown directive " + verb);
            }
        }
    }
}
