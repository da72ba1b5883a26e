/* test_chat_features.c: hand-written templates, one per feature, with the
 * expected text; each is also rendered by Python's Jinja2
 * (tests/chat/jinja_ref.py, set up as transformers does) when python3-jinja2
 * is installed, and the two renderings must agree. No ../shared needed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgelm.h"
#include "support/json.h"
#include "support/paths.h"

static const elm_chat_message conv[] = {
    {"system", "Be brief."},
    {"user", "Hi \"there\" {{ x }} \\ é 👋\n\tline2  "},
    {"assistant", "  Hello!  "},
    {"user", "Bye"},
};
#define NCONV (sizeof conv / sizeof *conv)

typedef struct feature {
    const char *tmpl;
    const char *expected; /* NULL: an error whose message contains `error` */
    const char *error;
} feature;

static const feature features[] = {
    /* text, whitespace control, comments, trim_blocks, lstrip_blocks */
    {"plain text\n", "plain text", NULL},
    {"a\n\n", "a\n", NULL},
    {"a {{- ' b ' -}} c", "a b c", NULL},
    {"x\n  {% if true %}\n  y\n  {% endif %}\nz", "x\n  y\nz", NULL},
    {"x  {%- if true -%}  y  {%- endif %}", "xy", NULL},
    {"a{# comment #}b\n{# line comment #}\nc", "ab\nc", NULL},
    {"  {%+ if true %}k{% endif %}", "  k", NULL},
    {"{% if true +%}\nk{% endif %}", "\nk", NULL},
    {"{{ 'x' }}\n{{ 'y' }}", "x\ny", NULL},
    /* literals and escapes */
    {"{{ 'a\\nb\\t\\'c\\'' }}|{{ \"d\\\"e\" }}|{{ '\\u00e9\\x41' }}", "a\nb\t'c'|d\"e|éA", NULL},
    {"{{ 1 }} {{ 1.5 }} {{ 2.0 }} {{ -3 }} {{ 1e3 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }}",
     "1 1.5 2.0 -3 1000.0 2.5 3 -4 1 2 1024", NULL},
    {"{{ true }} {{ none }} {{ [1, 'a', none] }} {{ {'k': 'v', 'n': 2} }}", "True None [1, 'a', None] {'k': 'v', 'n': 2}", NULL},
    {"{{ 'ab' ~ 1 ~ none }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'ab' * 3 }}", "ab1None ab [1, 2] ababab", NULL},
    /* comparisons, logic, in, conditional expressions */
    {"{{ 1 < 2 }} {{ 'a' == 'a' }} {{ 1 == 1.0 }} {{ 2 != 2 }} {{ 1 < 2 < 3 }} {{ 'b' >= 'a' }}", "True True True False True True", NULL},
    {"{{ 'ell' in 'hello' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}", "True True True", NULL},
    {"{{ not true or false and true }} {{ 0 or 'x' }} {{ 1 and 'y' }}", "False x y", NULL},
    {"{{ 'yes' if 1 > 0 else 'no' }} [{{ 'z' if false }}]", "yes []", NULL},
    /* variables, undefined */
    {"[{{ nothing }}][{{ nothing is defined }}][{% for x in nothing %}x{% endfor %}][{{ nothing|length }}]{% if not nothing %}f{% endif %}",
     "[][False][][0]f", NULL},
    {"{{ nothing.attr }}", NULL, "'nothing' is undefined"},
    {"{{ nothing + 1 }}", NULL, "is undefined"},
    {"{{ messages[0].missing }}|{{ messages[0]['role'] }}|{{ messages[-1].content }}|{{ messages[9] }}", "|system|Bye|", NULL},
    {"{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}", "<s></s>True", NULL},
    /* for loops */
    {"{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }},{% endfor %}",
     "1043104,2132004,3221004,4310014,", NULL},
    {"{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }} {% endfor %}", "1/2 2/2 ", NULL},
    {"{% for x in [] %}x{% else %}empty{% endfor %}", "empty", NULL},
    {"{% for x in [1, 2, 3, 4, 5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", "13", NULL},
    {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;", NULL},
    {"{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}", "ab[h][é]", NULL},
    {"{% for x in [1, 2] %}{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}", "|2;1|;", NULL},
    {"{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}", "012135321", NULL},
    {"{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = x + i %}{% endfor %}{{ x }}", "000", NULL},
    /* set, namespace, block set */
    {"{% set a = 'v' %}{% set b = a ~ '2' %}{{ a }}{{ b }}", "vv2", NULL},
    {"{% set ns = namespace(n=0, s='') %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "6", NULL},
    {"{% set blk %}inner {{ 1 + 1 }}{% endset %}[{{ blk }}]", "[inner 2]", NULL},
    /* if / elif / else */
    {"{% for i in [1, 2, 3] %}{% if i == 1 %}one{% elif i == 2 %}two{% else %}many{% endif %} {% endfor %}", "one two many ", NULL},
    /* macros */
    {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }}", "Hi A! Hi B? Hi C.", NULL},
    {"{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}", "321", NULL},
    {"{% macro f() %}x{% endmacro %}{{ f(1) }}", NULL, "takes not more than"},
    /* filters */
    {"{{ '  a b  '|trim }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}", "a b|ABC|abc|Hello World|Hello", NULL},
    {"{{ 'aXbX'|replace('X', '-') }}|{{ [1, 2, 3]|join(', ') }}|{{ [1, 2]|length }}|{{ 'héé'|length }}|{{ {'a': 1}|length }}", "a-b-|1, 2, 3|2|3|1", NULL},
    {"{{ nothing|default('dflt') }}|{{ ''|default('e', true) }}|{{ 'v'|d('x') }}|{{ [3, 4]|first }}|{{ [3, 4]|last }}", "dflt|e|v|3|4", NULL},
    {"{{ '42'|int + 1 }}|{{ '2.5'|float }}|{{ 'x'|int }}|{{ 3|string ~ 'a' }}|{{ [1, 'b']|list }}|{{ 'ab'|list }}", "43|2.5|0|3a|[1, 'b']|['a', 'b']", NULL},
    {"{{ {'b': 1, 'a': 2}|items|list }}|{% for k, v in {'b': 1, 'A': 2}|dictsort %}{{ k }}{{ v }}{% endfor %}", "[('b', 1), ('a', 2)]|A2b1", NULL},
    {"{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'x'|indent }}", "a\n  b\n\n  c|  a\n  b|x", NULL},
    {"{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list|length }}|{{ messages|rejectattr('role', 'eq', 'user')|map(attribute='role')|join(',') }}",
     "2|system,assistant", NULL},
    {"{{ [1, 2, 1, 3]|unique|list }}|{{ ['b', 'a']|sort|join }}|{{ [1, 2]|reverse|list }}|{{ 'x<y&'|e }}|{{ 'one two'|wordcount }}|{{ -3|abs }}", "[1, 2, 3]|ab|[2, 1]|x&lt;y&amp;|2|3", NULL},
    {"{% filter upper %}shout {{ 'it' }}{% endfilter %}", "SHOUT IT", NULL},
    {"{{ 'x'|nosuchfilter }}", NULL, "no filter named 'nosuchfilter'"},
    /* tojson */
    {"{{ {'a': [1, 2.5, true, none], 'é': 'q\"\\n'}|tojson }}", "{\"a\": [1, 2.5, true, null], \"é\": \"q\\\"\\n\"}", NULL},
    {"{{ {'b': 1, 'a': {'c': []}}|tojson(indent=2, sort_keys=true) }}", "{\n  \"a\": {\n    \"c\": []\n  },\n  \"b\": 1\n}", NULL},
    {"{{ [1, {'k': 'v'}]|tojson(separators=(',', ':')) }}", "[1,{\"k\":\"v\"}]", NULL},
    /* tests */
    {"{{ 'a' is string }}{{ 1 is number }}{{ 1 is string }}{{ none is none }}{{ {} is mapping }}{{ [] is iterable }}{{ [] is sequence }}{{ true is boolean }}{{ 1 is integer }}{{ 1.0 is float }}",
     "TrueTrueFalseTrueTrueTrueTrueTrueTrueTrue", NULL},
    {"{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 2 is in [1, 2] }}{{ 'a' is equalto 'a' }}{{ x is not defined }}{{ false is false }}{{ true is true }}",
     "TrueTrueTrueTrueTrueTrueTrueTrue", NULL},
    /* string, dict and list methods */
    {"[{{ '  x  '.strip() }}][{{ 'xxhixx'.strip('x') }}][{{ '  x'.lstrip() }}][{{ 'x  '.rstrip() }}][{{ 'a,b,,c'.split(',') }}][{{ ' a  b '.split() }}][{{ 'a:b:c'.split(':', 1) }}]",
     "[x][hi][x][x][['a', 'b', '', 'c']][['a', 'b']][['a', 'b:c']]", NULL},
    {"{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ 'a-a'.replace('a', 'b') }}{{ 'ab cd'.title() }}{{ ', '.join(['x', 'y']) }}",
     "TrueTrueABabb-bAb Cdx, y", NULL},
    {"{% set d = {'a': 1, 'b': 2} %}{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 9) }}{{ d.keys()|list }}{{ d.values()|list }}{{ d['b'] }}{{ d.a }}", "1None9['a', 'b'][1, 2]21", NULL},
    {"{{ [1, 2].append(3) }}", NULL, "unsafe"},
    /* slicing */
    {"{{ [1, 2, 3, 4][1:3] }}{{ [1, 2, 3][::-1] }}{{ 'héllo'[1:3] }}{{ 'abc'[-1] }}{{ [1, 2, 3, 4][::2] }}{{ 'abc'[:-1] }}{{ messages[1:]|length }}", "[2, 3][3, 2, 1]élc[1, 3]ab3", NULL},
    /* globals */
    {"{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now is defined }}", "15 Jan 2026|2026-01-15|True", NULL},
    {"{{ raise_exception('bad: ' ~ messages[0].role) }}", NULL, "bad: system"},
    /* center, loop.cycle */
    {"[{{ 'ab'|center(7) }}][{{ 'abc'|center(6) }}][{{ '\u00e9'|center(4) }}][{{ 5|center(3) }}][{{ 'abcd'|center(2) }}][{{ 'ab'|center(width=5) }}]",
     "[   ab  ][ abc  ][ é  ][ 5 ][abcd][  ab ]", NULL},
    {"{{ 'x'|center|length }}", "80", NULL},
    {"{% for m in messages %}{{ loop.cycle('odd', 'even') }} {% endfor %}", "odd even odd even ", NULL},
    {"{% for i in range(2) %}{{ loop.cycle() }}{% endfor %}", NULL, "no items for cycling given"},
    /* the % operator on strings */
    {"{{ '%s' % 5 }}|{{ '%d-%s' % (1, 'x') }}|{{ '%5.2f|%-4d|%04d|%x|%X|%o|%#x|%#o|%e|%g|%+d|% d|%c|%c|%%|%r' % (3.14159, 7, 42, 255, 255, 8, 255, 8, 12345.678, 0.0001, 5, 5, 65, 'z', 'a') }}",
     "5|1-x| 3.14|7   |0042|ff|FF|10|0xff|0o10|1.234568e+04|0.0001|+5| 5|A|z|%|'a'", NULL},
    {"{{ '%(role)s: %(content)s' % messages[0] }}", "system: Be brief.", NULL},
    {"{{ '%s' % none }}|{{ '%s' % true }}|{{ '%d' % true }}|{{ '%d' % 3.9 }}|{{ '%d' % -3.9 }}|{{ '%x' % -255 }}|{{ '%.3d' % 5 }}|{{ '%5s|%-5s|%.2s' % ('ab', 'ab', 'abc') }}|{{ '%s' % [1, 2] }}|{{ '%s' % ((1, 2),) }}",
     "None|True|1|3|-3|-ff|005|   ab|ab   |ab|[1, 2]|(1, 2)", NULL},
    {"{{ '%s %s' % (1,) }}", NULL, "not enough arguments for format string"},
    {"{{ '%s' % (1, 2) }}", NULL, "not all arguments converted"},
    {"{{ '%d' % 'x' }}", NULL, "a real number is required, not str"},
    {"{{ '%q' % 1 }}", NULL, "unsupported format character 'q'"},
    {"{{ '%(nokey)s' % {'k': 1} }}", NULL, "nokey"},
    /* macros: varargs, kwargs, caller and call blocks */
    {"{% macro m(a) %}{{ a }}:{{ varargs }}:{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4, y='z') }}|{{ m(1) }}",
     "1:(2, 3):{'x': 4, 'y': 'z'}|1:():{}", NULL},
    {"{% macro m(a, b=2) %}{{ a }}{{ b }}{{ kwargs }}{% endmacro %}{{ m(1, c=3, b=5) }}", "15{'c': 3}", NULL},
    {"{% macro m(items) %}{% for i in items %}<{{ caller(i, loop.index) }}>{% endfor %}{% endmacro %}{% call(x, n) m(['a', 'b']) %}{{ n }}={{ x }}{% endcall %}",
     "<1=a><2=b>", NULL},
    {"{% macro m() %}[{{ caller() }}]{% endmacro %}{% for q in [1, 2] %}{% call m() %}{{ q }}{{ messages[0].role }}{% endcall %}{% endfor %}",
     "[1system][2system]", NULL},
    {"{% macro m() %}{% if caller is defined %}{{ caller() }}{% else %}none{% endif %}{% endmacro %}{{ m() }}|{% call m() %}yes{% endcall %}",
     "none|yes", NULL},
    {"{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}", NULL, "'caller' is undefined"},
    {"{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, b=2) }}", NULL, "takes no keyword argument 'b'"},
    {"{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", NULL, "takes not more than 1 argument(s)"},
    {"{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}", NULL, "special caller argument"},
    /* errors naming the feature */
    {"{% include 'x' %}", NULL, "unsupported feature: the 'include' tag"},
    {"{% for x in y recursive %}{% endfor %}", NULL, "recursive"},
    {"{% if true %}", NULL, "not closed"},
    {"{{ 1 + }}", NULL, "expected an expression"},
    {"{% endif %}", NULL, "unexpected 'endif'"},
    {"{{ 'x' is nosuchtest }}", NULL, "no test named"},
    {"{{ 1 / 0 }}", NULL, "division by zero"},
};

static elm_status render(const char *t, char *buf, size_t cap, size_t *len, char *err, size_t err_size) {
    elm_chat_params p;
    elm_chat_default_params(&p);
    p.bos_token = "<s>";
    p.eos_token = "</s>";
    p.now = 1768435200;
    return elm_chat_apply_template(NULL, t, conv, NCONV, &p, buf, cap, len, err, err_size);
}

Test(chat_features, expected_text) {
    int bad = 0;
    for (size_t i = 0; i < sizeof features / sizeof *features; i++) {
        const feature *f = &features[i];
        char buf[4096], err[512] = "";
        size_t len = 0;
        elm_status st = render(f->tmpl, buf, sizeof buf, &len, err, sizeof err);
        bool ok = f->expected ? st == ELM_OK && strcmp(buf, f->expected) == 0
                              : st == ELM_ERR_TEMPLATE && strstr(err, f->error);
        if (!ok) {
            bad++;
            fprintf(stderr, "feature %zu: %s\n  got %s [%s]\n  want [%s]\n", i, f->tmpl, elm_strerror(st),
                    st == ELM_OK ? buf : err, f->expected ? f->expected : f->error);
        }
    }
    cr_assert_eq(bad, 0, "%d feature templates fail (listed above)", bad);
}

/* One JSON string, escaped, appended to a growing buffer. */
static void put_json_str(char **p, size_t *n, const char *s) {
    size_t need = *n + strlen(s) * 6 + 3;
    *p = realloc(*p, need + 1);
    char *o = *p + *n;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') { *o++ = '\\'; *o++ = (char)*c; }
        else if (*c < 0x20) o += sprintf(o, "\\u%04x", *c);
        else *o++ = (char)*c;
    }
    *o++ = '"';
    *o = 0;
    *n = (size_t)(o - *p);
}

static void put_raw(char **p, size_t *n, const char *s) {
    *p = realloc(*p, *n + strlen(s) + 1);
    strcpy(*p + *n, s);
    *n += strlen(s);
}

/* Requests for jinja_ref.py: every template with `msgs`. */
static char *requests(const char *const *tmpls, size_t nt, const elm_chat_message *msgs, size_t nm, bool agp) {
    char *p = NULL;
    size_t n = 0;
    put_raw(&p, &n, "");
    for (size_t i = 0; i < nt; i++) {
        put_raw(&p, &n, "{\"template\": ");
        put_json_str(&p, &n, tmpls[i]);
        put_raw(&p, &n, ", \"messages\": [");
        for (size_t k = 0; k < nm; k++) {
            put_raw(&p, &n, k ? ", {\"role\": " : "{\"role\": ");
            put_json_str(&p, &n, msgs[k].role);
            put_raw(&p, &n, ", \"content\": ");
            put_json_str(&p, &n, msgs[k].content);
            put_raw(&p, &n, "}");
        }
        put_raw(&p, &n, agp ? "], \"add_generation_prompt\": true" : "], \"add_generation_prompt\": false");
        put_raw(&p, &n, ", \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}\n");
    }
    return p;
}

/* Runs jinja_ref.py; NULL (test skipped) without python3-jinja2. */
static char *reference(const char *input) {
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/chat/jinja_ref.py", test_source_dir());
    const char *argv[] = {"/usr/bin/python3", script, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, input, strlen(input), &out, &err);
    free(err);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Compares our renderings of `tmpls` with Python's; returns the mismatches. */
static int compare_with_python(const char *const *tmpls, size_t nt, const elm_chat_message *msgs, size_t nm, bool agp) {
    char *req = requests(tmpls, nt, msgs, nm, agp);
    char *ref = reference(req);
    free(req);
    if (!ref) return -1;
    int bad = 0;
    char *line = ref;
    for (size_t i = 0; i < nt; i++) {
        char *e = strchr(line, '\n');
        cr_assert(e, "jinja_ref.py gave fewer lines than requests");
        json_value *r = json_parse(line, (size_t)(e - line), NULL, 0);
        cr_assert(r);
        elm_chat_params p;
        elm_chat_default_params(&p);
        p.bos_token = "<s>";
        p.eos_token = "</s>";
        p.now = 1768435200;
        p.add_generation_prompt = agp;
        static char buf[1 << 16];
        char err[512] = "";
        size_t len = 0;
        elm_status st = elm_chat_apply_template(NULL, tmpls[i], msgs, nm, &p, buf, sizeof buf, &len, err, sizeof err);
        const json_value *text = json_get(r, "text");
        bool ok = text ? st == ELM_OK && len == text->len && memcmp(buf, text->string, len) == 0
                       : st == ELM_ERR_TEMPLATE;
        if (ok && json_get(r, "raised")) ok = strcmp(err, json_str(json_get(r, "error"))) == 0;
        if (!ok) {
            bad++;
            fprintf(stderr, "template %zu differs from Jinja2:\n%s\n  ours: %s [%s]\n  jinja2: [%s]\n", i, tmpls[i],
                    elm_strerror(st), st == ELM_OK ? buf : err, text ? text->string : json_str(json_get(r, "error")));
        }
        json_free(r);
        line = e + 1;
    }
    free(ref);
    return bad;
}

Test(chat_features, same_as_jinja2, .timeout = 60) {
    const char *tmpls[sizeof features / sizeof *features];
    size_t n = 0;
    for (size_t i = 0; i < sizeof features / sizeof *features; i++)
        if (!features[i].error || !strstr(features[i].error, "recursive")) /* unsupported here */
            tmpls[n++] = features[i].tmpl;
    int bad = compare_with_python(tmpls, n, conv, NCONV, true);
    if (bad < 0) cr_skip_test("python3-jinja2 is not installed: the comparison with Jinja2 is skipped");
    cr_assert_eq(bad, 0, "%d templates render differently from Jinja2", bad);
}

/* Real-world shaped templates (written here, not read from ../shared). */
static const char *const chat_templates[] = {
    /* ChatML */
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    /* Llama 3 */
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    /* Gemma (raises on system) */
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
    /* Mistral-style, with a namespace and alternation check */
    "{%- set ns = namespace(sys='') %}\n{%- for m in messages %}\n  {%- if m.role == 'system' %}{% set ns.sys = m.content + '\n\n' %}\n  {%- elif m.role == 'user' %}\n    {{- '[INST] ' + (ns.sys if loop.index <= 2 else '') + m.content + ' [/INST]' }}\n  {%- else %}\n    {{- ' ' + m.content|trim + eos_token }}\n  {%- endif %}\n{%- endfor %}\n",
};

static const elm_chat_message conv_a[] = {{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2 with 'quotes' and \"dq\""}};
static const elm_chat_message conv_b[] = {{"system", "S\n\nmulti"}, {"user", "  spaced  "}, {"assistant", "{% raw %} {{ x }}"}};
static const elm_chat_message conv_c[] = {{"user", "日本語 ✓ \\n literal"}};

Test(chat_features, conversations_same_as_jinja2, .timeout = 60) {
    size_t nt = sizeof chat_templates / sizeof *chat_templates;
    int bad = 0;
    struct { const elm_chat_message *m; size_t n; } convs[] = {{conv, NCONV}, {conv_a, 3}, {conv_b, 3}, {conv_c, 1}};
    for (size_t k = 0; k < 4; k++)
        for (int agp = 0; agp < 2; agp++) {
            int b = compare_with_python(chat_templates, nt, convs[k].m, convs[k].n, agp);
            if (b < 0) cr_skip_test("python3-jinja2 is not installed: the comparison with Jinja2 is skipped");
            bad += b;
        }
    cr_assert_eq(bad, 0, "%d renderings differ from Jinja2", bad);
}

/* More templates, checked only against Jinja2 (no hand-written expectation). */
static const char *const python_only[] = {
    "{% for m in messages %}\n  {{ m.role }}\n{% endfor %}\n",
    "a\n  {# c #}\n  b\n",
    "{%- for m in messages -%}\n  {{- m.content -}}\n{%- endfor -%}",
    "{{ messages[1].content.split() }}|{{ messages[1].content.strip() }}|{{ messages[1].content|trim }}",
    "{{ messages[1].content|indent(4) }}|{{ messages[1].content|indent(4, true, true) }}",
    "{{ messages|length }} {{ messages[-1] }} {{ messages[0] }}",
    "{{ messages|tojson }}",
    "{{ messages|tojson(indent=2) }}",
    "{{ 0.1 + 0.2 }} {{ 1/3 }} {{ 1e20 }} {{ 1e-7 }} {{ 123456789.0 * 1000 }} {{ -0.0 }} {{ 2**0.5 }}",
    "{{ '%s' }} {{ 'a' 'b' }} {{ \"it's\" }}",
    "{{ [1,2,3]|first }} {{ {'a':1}|first }} {{ 'abc'|first }} {{ 'abc'|last }}",
    "{% set x = {'a': {'b': [1, {'c': 'd'}]}} %}{{ x.a.b[1].c }}{{ x['a']['b'][0] }}",
    "{{ 'Hello World'.split(' ')|join('-') }}{{ ' x '.strip(' ') }}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
    "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}{{ sys }}|{% for m in msgs %}{{ m.role[0] }}{% endfor %}",
    "{{ 'ab'[5] }}|{{ [1][5] }}|{{ messages[0].nope|default('D') }}",
    "{{ none|string }}{{ true|string|lower }}{{ 1.5|int }}{{ '3'|float }}{{ 'abc'|replace('', '-') }}",
    "{{ messages|map(attribute='role')|join(',') }}{{ messages|selectattr('content')|list|length }}",
    "{{ 1 if 0 else 2 if 0 else 3 }}{{ -2 ** 2 }}{{ (2 + 3) * 4 }}{{ 10 - 2 - 3 }}{{ 2 ** 3 ** 2 }}",
    "{{ 'a' ~ 1 + 2 }}",
    "{{ [3,1,2]|sort }}{{ ['b','A','a']|sort }}{{ [3,1,2]|sort(reverse=true) }}{{ ['b','A']|sort(case_sensitive=true) }}",
    "{{ [1,2,3]|sum }}{{ [1,2,3]|max }}{{ [1,2,3]|min }}{{ [1,2,3,4,5]|batch(2)|list }}",
    "{% macro m(a, b=a) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 2) }}",
    "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 3 is gt 2 }}{{ 3 is le 2 }}{{ none is sameas none }}{{ x is iterable }}{{ x is sequence }}{{ 5 is number }}{{ true is number }}",
    "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}{{ ns.b }}",
    "{{ messages[1].content|wordcount }}{{ messages[1].content|length }}{{ messages[1].content[::-1] }}",
    "{{ 'x\ny'|indent(2, first=true) }}",
    "{%- if true %}\n  x\n{%- endif %}\n",
    "  {%- if true %}  y  {% endif -%}  \n  z",
    "{% for i in range(3) %}{{ loop.cycle if false }}{{ i }}{% endfor %}",
    "{{ {'a': 1, 'b': None}|tojson(sort_keys=true) }}{{ [1.0, 1e100, -1.5e-10]|tojson }}",
    "{{ '\\u00e9'|upper }}{{ 'é'|length }}",
    "{{ 'aaa'.replace('a', 'b', 2) }}{{ 'a.b.c'.split('.', -1) }}{{ '  a b  '.split(None, 1) }}{{ 'x'.startswith(('a', 'x')) }}",
    "{{ messages[0]['content'] if messages[0]['role'] == 'system' else 'none' }}",
    "{% for m in messages %}{% if loop.index0 is even %}{{ m.role }}{% endif %}{% endfor %}",
    "{{ range(5)|list }}{{ range(10, 0, -3)|list }}{{ range(0)|list }}",
    "{{ {'k': [1, (2, 3)]} }}{{ (1,) }}{{ () }}",
    "{{ dict(a=1, b='x') }}{{ dict(a=1).items()|list }}",
    "{{ 'abc'.title() }}{{ 'hello-world foo_bar'|title }}{{ \"it's\"|title }}",
    "{{ 'x'|center(9) }}|{{ 'ab'|center(1) }}|{{ ''|center(3) }}|{{ messages[2].content|center(11) }}|{{ 12|center(6) }}|",
    "{% for m in messages %}{{ loop.cycle('a', 'b', 'c') }}{{ loop.cycle(m.role) }}{% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.cycle(1, 2) }}{% endfor %}",
    "{{ '%05.1f|%-10.3e|%+g|%G|%.0f|%.0f|%#.0f' % (2.25, 1234.5, 1e20, 1e-10, 0.5, 1.5, 3.0) }}",
    "{{ '%*d|%-*d|%.*f|%*s' % (5, 3, 4, 7, 2, 3.14159, -4, 'a') }}",
    "{{ '%(a)5.1f|%(b)-4s|%(a)r' % {'a': 2.25, 'b': 'x'} }}",
    "{{ '%c%c%c' % (233, 128075, 'q') }}{{ '%3c|%-3c|' % ('\u00e9', 65) }}",
    "{{ '%#o %#x %#X %08x %#08x %+x %o %i %u' % (0, 0, 255, -255, 255, 255, -8, 2.5, 7) }}",
    "{{ '%s|%r|%.3r|%5.1s|' % (messages[0], \"it's\", 'abcdef', 'xyz') }}",
    "{{ '%s' % messages[1].content }}{{ '' % [] }}{{ 'n' % {'a': 1} }}{{ '%%' % () }}",
    "{{ '%d%%' % 50 }} {{ '%s and %s' % ('a', 'b') }} {{ '%s' % ('x',) }} {{ '%05d' % -42 }} {{ '% 5d' % 42 }}",
    "{{ '%s' % (1, 2) }}",
    "{{ '%d' % [1] }}",
    "{{ '%c' % 1114112 }}",
    "{% macro row(n) %}{{ n }}{{ varargs|join(',') }}{% for k, v in kwargs.items() %}{{ k }}{{ v }}{% endfor %}{% endmacro %}{{ row(1, 2, 3, a=1, b='x') }}{{ row(n=0) }}",
    "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}{% call wrap('i') %}{{ messages[1].role }}{% endcall %}{% endcall %}",
    "{% macro m() %}{{ caller(1) }}{% endmacro %}{% call(a, b=7) m() %}{{ a }}{{ b }}{% endcall %}",
    "{% macro m() %}{{ caller() }}{% endmacro %}{% set v = 'outer' %}{% call m() %}{% set v = 'inner' %}{{ v }}{% endcall %}{{ v }}",
    "{% macro list_it(items) %}{% for i in items %}{{ caller(i) }}{% if not loop.last %}, {% endif %}{% endfor %}{% endmacro %}{% call(m) list_it(messages) %}{{ m.role|upper }}{% endcall %}",
    "{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}",
    "{% macro m() %}{{ varargs|length }}{{ kwargs|length }}{% endmacro %}{{ m() }}{{ m(1, 2, k=3) }}",
};

static const elm_chat_message conv_d[] = {
    {"system", "Sys  "}, {"user", " Hi  there\nsecond line\n\n third "}, {"assistant", "Ans"}};

Test(chat_features, more_same_as_jinja2, .timeout = 60) {
    int bad = compare_with_python(python_only, sizeof python_only / sizeof *python_only, conv_d, 3, true);
    if (bad < 0) cr_skip_test("python3-jinja2 is not installed: the comparison with Jinja2 is skipped");
    cr_assert_eq(bad, 0, "%d templates render differently from Jinja2", bad);
}
