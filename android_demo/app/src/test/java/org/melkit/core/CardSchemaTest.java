package org.melkit.core;

import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;
import org.junit.Test;

/**
 * ModelCard reads every field the card format requires: for each field the JSON Schema
 * ({@code melkit/core/model_card.schema.json}) requires, top-level and nested, a copy of a real card
 * without that field, or with a value of the wrong type, is refused, naming the field.
 *
 * <p>The schema and card come from the system properties {@code melkit.schema} and {@code melkit.card},
 * else the repository's schema and the committed golden card (paths from the app module, as Gradle runs
 * tests). The number of fields checked is printed so the caller can see that something was checked.
 */
public class CardSchemaTest {
    static File schemaFile() {
        return new File(System.getProperty("melkit.schema", "../../melkit/core/model_card.schema.json"));
    }

    static File cardFile() {
        return new File(System.getProperty("melkit.card", "src/test/resources/golden/card.json"));
    }

    static String text(File f) throws IOException {
        return new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
    }

    /** A schema node with its local {@code $ref} merged in, or the object branch of a nullable anyOf. */
    static JSONObject resolve(JSONObject schema, JSONObject node) throws JSONException {
        if (node.has("anyOf")) {
            JSONArray branches = node.getJSONArray("anyOf");
            for (int i = 0; i < branches.length(); i++) {
                JSONObject b = branches.getJSONObject(i);
                if (!"null".equals(b.optString("type"))) {
                    return resolve(schema, b);
                }
            }
        }
        if (!node.has("$ref")) {
            return node;
        }
        JSONObject target = schema;
        for (String part : node.getString("$ref").substring(2).split("/")) {
            target = target.getJSONObject(part);
        }
        JSONObject base = resolve(schema, target);
        JSONObject merged = new JSONObject(base.toString());
        JSONArray required = merged.has("required") ? merged.getJSONArray("required") : new JSONArray();
        JSONArray own = node.optJSONArray("required");
        for (int i = 0; own != null && i < own.length(); i++) {
            required.put(own.getString(i));
        }
        merged.put("required", required);
        JSONObject props = merged.has("properties") ? merged.getJSONObject("properties") : new JSONObject();
        JSONObject ownProps = node.optJSONObject("properties");
        if (ownProps != null) {
            JSONArray names = ownProps.names();
            for (int i = 0; names != null && i < names.length(); i++) {
                props.put(names.getString(i), ownProps.get(names.getString(i)));
            }
        }
        merged.put("properties", props);
        return merged;
    }

    /** One required field: its path and its (resolved) schema. */
    static final class Field {
        final List<String> path;
        final JSONObject schema;

        Field(List<String> path, JSONObject schema) {
            this.path = path;
            this.schema = schema;
        }

        String dotted() {
            StringBuilder sb = new StringBuilder();
            for (String p : path) {
                sb.append(sb.length() == 0 ? "" : ".").append(p);
            }
            return sb.toString();
        }
    }

    static void required(JSONObject schema, JSONObject node, List<String> prefix, List<Field> out)
            throws JSONException {
        JSONObject n = resolve(schema, node);
        JSONArray req = n.optJSONArray("required");
        JSONObject props = n.optJSONObject("properties");
        for (int i = 0; req != null && i < req.length(); i++) {
            String key = req.getString(i);
            List<String> path = new ArrayList<String>(prefix);
            path.add(key);
            JSONObject sub = props == null ? null : props.optJSONObject(key);
            JSONObject resolved = sub == null ? new JSONObject() : resolve(schema, sub);
            out.add(new Field(path, resolved));
            if (sub != null) {
                required(schema, sub, path, out);
            }
        }
    }

    static List<Field> requiredFields() throws Exception {
        JSONObject schema = new JSONObject(text(schemaFile()));
        List<Field> out = new ArrayList<Field>();
        required(schema, schema, new ArrayList<String>(), out);
        return out;
    }

    /** The object holding {@code path}'s last key in {@code card}, or null where the card has none. */
    static JSONObject holder(JSONObject card, List<String> path) {
        JSONObject o = card;
        for (int i = 0; i < path.size() - 1 && o != null; i++) {
            o = o.optJSONObject(path.get(i));
        }
        return o;
    }

    static String refusal(String json) {
        try {
            ModelCard.parse(json);
        } catch (IllegalArgumentException e) {
            return e.getMessage();
        }
        return null;
    }

    /** A value of another JSON type than {@code schema} allows. */
    static Object wrongValue(JSONObject schema) {
        String type = schema.optString("type");
        if (type.equals("string")) {
            return Integer.valueOf(7);
        }
        if (type.equals("object") || type.equals("array") || type.equals("number") || type.equals("integer")) {
            return "x";
        }
        return null;  // const or anything-goes: no wrong type to try
    }

    @Test
    public void theCardParsesWhole() throws Exception {
        ModelCard c = ModelCard.parse(text(cardFile()));
        assertTrue(c.melIndex >= 0);
    }

    @Test
    public void everyRequiredFieldIsReadAndARefusalNamesIt() throws Exception {
        String intact = text(cardFile());
        List<Field> fields = requiredFields();
        assertTrue("the schema requires fields", fields.size() > 20);
        int checked = 0;
        int typed = 0;
        for (Field f : fields) {
            JSONObject card = new JSONObject(intact);
            JSONObject h = holder(card, f.path);
            String key = f.path.get(f.path.size() - 1);
            if (h == null || !h.has(key)) {
                fail("the card " + cardFile() + " has no " + f.dotted() + " to take away");
            }
            Object value = h.get(key);
            h.remove(key);
            String message = refusal(card.toString());
            if (message == null) {
                fail("ModelCard accepted a card without " + f.dotted());
            }
            if (!f.dotted().equals("melkit_card")) {
                assertTrue("refusal without " + f.dotted() + " does not name it: " + message,
                        message.contains("'" + f.dotted() + "'"));
            }
            checked++;
            Object wrong = wrongValue(f.schema);
            if (wrong != null) {
                h.put(key, wrong);
                message = refusal(card.toString());
                if (message == null) {
                    fail("ModelCard accepted " + f.dotted() + " = " + wrong + " (wrong type)");
                }
                assertTrue("refusal of a wrong " + f.dotted() + " does not name it: " + message,
                        message.contains("'" + f.dotted() + "'"));
                typed++;
            }
            h.put(key, value);
            assertNull(refusal(card.toString()));
        }
        System.out.println("card fields checked: " + checked + " (of them with a wrong type: " + typed + ")");
    }
}
