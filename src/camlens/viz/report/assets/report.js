/* camlens report: a grid of explained images with filters, a detail view and a per-class summary.
 *
 * Plain JavaScript, no dependency, no network. The data comes from data.js (window.CAMLENS_REPORT,
 * written by camlens.viz.report); the maps from maps/<method>/<chunk>.js files loaded when one of
 * their images is on screen; the photos from thumbs/. Every string from the data reaches the page
 * through textContent, a property (src, href, title) or an option's text: never parsed as HTML.
 * Only the cards on screen exist in the document (virtual scrolling), so 20,000 images cost as
 * little as 50.
 */
(function () {
  "use strict";

  var D = window.CAMLENS_REPORT;
  if (!D || D.format !== 1) {
    document.body.textContent = "camlens report: data.js is missing or from another camlens version; rerun `camlens report`.";
    return;
  }

  // ---------------------------------------------------------------- data as typed columns
  var I = D.images, R = D.rows;
  var nImages = I.id.length, nRows = R.image.length;
  var methods = D.methods;
  var names = D.classNames;
  function className(index) {
    if (index === null || index === undefined || index < 0) return "";
    var name = names[String(index)];
    return name === undefined ? "class " + index : name;
  }
  function column(values, Type, missing) {
    var out = new Type(values.length);
    for (var i = 0; i < values.length; i++) out[i] = values[i] === null ? missing : values[i];
    return out;
  }
  var rowImage = column(R.image, Int32Array, -1);
  var rowMethod = column(R.method, Int16Array, -1);
  var rowRank = column(R.rank, Int16Array, 0);
  var rowClass = column(R.cls, Int32Array, -1);
  var rowScore = column(R.score, Float64Array, NaN);
  var rowProb = column(R.prob, Float64Array, NaN);
  var rowMap = column(R.map, Uint8Array, 0);
  var imgPred = column(I.pred, Int32Array, -1);
  var imgTrue = column(I.true, Int32Array, -1);
  var imgCorrect = column(I.correct.map(function (c) { return c === null ? -1 : (c ? 1 : 0); }), Int8Array, -1);
  var imgPathRank = column(I.pathRank, Int32Array, 0);
  var pathsLower = null; // lower-cased paths, made on the first search
  var maxRank = 0;
  for (var r = 0; r < nRows; r++) if (rowRank[r] > maxRank) maxRank = rowRank[r];
  var rowsOfImage = new Array(nImages);
  for (r = 0; r < nRows; r++) (rowsOfImage[rowImage[r]] || (rowsOfImage[rowImage[r]] = [])).push(r);

  // ---------------------------------------------------------------- small DOM helpers
  function $(selector, root) { return (root || document).querySelector(selector); }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function field(name) { return document.querySelector('[name="' + name + '"]'); }
  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }
  function fmt(x, digits) { return isNaN(x) ? "–" : x.toFixed(digits); }
  function plural(n, word) { return n.toLocaleString("en-US") + " " + word + (n === 1 ? "" : "s"); }
  /* The thumbnail of an image: its own, or that of another path to the same photo file. */
  function thumbUrl(position) { var id = I.thumb[position]; return "thumbs/" + Math.floor(id / 1000) + "/" + id + ".jpg"; }

  // ---------------------------------------------------------------- colormaps and maps
  var lut = D.colormaps.jet;
  var chunks = {}; // "method:chunk" -> {first, count, k, h, w, bytes} | "loading" | "failed"
  var waiting = {}; // "method:chunk" -> [callbacks]
  window.camlensMaps = function (payload) {
    var key = payload.method + ":" + payload.chunk;
    var text = atob(payload.data), bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    chunks[key] = { first: payload.first, count: payload.count, k: payload.k, h: payload.h, w: payload.w, bytes: bytes };
    var callbacks = waiting[key] || [];
    delete waiting[key];
    callbacks.forEach(function (callback) { callback(chunks[key]); });
  };
  function withMap(method, imagePosition, rank, callback) {
    var size = methods[method].chunk;
    if (!size) return;
    var id = I.id[imagePosition], chunk = Math.floor(id / size), key = method + ":" + chunk;
    var give = function (c) {
      var local = id - c.first, area = c.h * c.w;
      if (local < 0 || local >= c.count || rank >= c.k) return;
      var start = (local * c.k + rank) * area;
      callback(c.bytes.subarray(start, start + area), c.h, c.w);
    };
    var have = chunks[key];
    if (have && have.bytes) return give(have);
    if (have === "failed") return;
    (waiting[key] || (waiting[key] = [])).push(give);
    if (have === "loading") return;
    chunks[key] = "loading";
    var script = document.createElement("script");
    script.src = "maps/" + methods[method].dir + "/" + chunk + ".js";
    script.addEventListener("error", function () { chunks[key] = "failed"; delete waiting[key]; });
    script.addEventListener("load", function () { script.remove(); });
    document.head.appendChild(script);
  }
  function paint(canvas) {
    var values = canvas._values;
    if (!values) return;
    var context = canvas.getContext("2d");
    var image = context.createImageData(canvas.width, canvas.height);
    for (var i = 0, n = values.length; i < n; i++) {
      var v = values[i] * 3;
      image.data[4 * i] = lut[v];
      image.data[4 * i + 1] = lut[v + 1];
      image.data[4 * i + 2] = lut[v + 2];
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }
  /* A canvas at the map's own resolution (7x7 for a ResNet), stretched over the photo by CSS:
   * the browser interpolates it smoothly, the opacity is a CSS variable, the colormap a lookup. */
  function heatCanvas(method, imagePosition, rank) {
    var canvas = el("canvas", "heat");
    canvas.width = 1; canvas.height = 1;
    withMap(method, imagePosition, rank, function (values, h, w) {
      canvas.width = w; canvas.height = h;
      canvas._values = values;
      paint(canvas);
      canvas.classList.add("ready");
    });
    return canvas;
  }
  function mapFromBase64(text) {
    var raw = atob(text), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }
  function repaintAll() { document.querySelectorAll("canvas.heat").forEach(paint); drawPreview(); }
  function drawPreview() {
    var canvas = $("#cmap-preview"), context = canvas.getContext("2d"), image = context.createImageData(256, 1);
    for (var i = 0; i < 256; i++) {
      image.data[4 * i] = lut[3 * i]; image.data[4 * i + 1] = lut[3 * i + 1]; image.data[4 * i + 2] = lut[3 * i + 2];
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  /* The photo (fitted into a box of boxW x boxH, keeping its aspect) with the heatmap over it. */
  function picture(imagePosition, method, rank, boxW, boxH, large) {
    var w = I.width[imagePosition] || 4, h = I.height[imagePosition] || 3;
    var scale = Math.min(boxW / w, boxH / h);
    var pic = el("div", "pic");
    pic.style.width = Math.round(w * scale) + "px";
    pic.style.height = Math.round(h * scale) + "px";
    var row = method >= 0 ? findRow(imagePosition, method, rank) : -1;
    if (I.thumb[imagePosition] === null && row >= 0 && R.overlay[row]) {
      // no photo to draw the map over (moved, or from a torch Dataset): the run's overlay PNG
      var baked = el("img", "photo");
      baked.alt = "";
      baked.loading = "lazy";
      baked.src = R.overlay[row];
      pic.appendChild(baked);
      pic.appendChild(el("span", "baked", "overlay"));
      return pic;
    }
    if (I.thumb[imagePosition] !== null) {
      var img = el("img", "photo");
      img.alt = "";
      img.decoding = "async";
      img.loading = "lazy";
      if (large && I.photo[imagePosition]) {
        img.src = I.photo[imagePosition];
        img.addEventListener("error", function () { if (img.src.indexOf("thumbs/") < 0) img.src = thumbUrl(imagePosition); });
      } else {
        img.src = thumbUrl(imagePosition);
      }
      pic.appendChild(img);
    } else {
      pic.appendChild(el("div", "nophoto", "photo not found"));
    }
    if (row >= 0 && rowMap[row]) pic.appendChild(heatCanvas(method, imagePosition, rank));
    return pic;
  }
  function findRow(imagePosition, method, rank) {
    var rows = rowsOfImage[imagePosition] || [];
    for (var i = 0; i < rows.length; i++) if (rowMethod[rows[i]] === method && rowRank[rows[i]] === rank) return rows[i];
    return -1;
  }

  // ---------------------------------------------------------------- filter state
  var state = {};
  var defaults = { method: "0", rank: "0", predicted: "", "true": "", correct: "", q: "", pmin: "0", pmax: "1",
                   sort: "prob-desc", opacity: "0.5", cmap: "jet", size: "220", view: "grid" };
  var filterNames = ["method", "rank", "predicted", "true", "correct", "q", "pmin", "pmax", "sort"];
  var displayNames = ["opacity", "cmap", "size"];

  function fillControls() {
    var select = field("method");
    methods.forEach(function (m, j) { option(select, String(j), m.name + (m.layer ? "  ·  " + m.layer : "")); });
    if (methods.length > 1) option(select, "all", "all methods");
    select = field("rank");
    for (var k = 0; k <= maxRank; k++) option(select, String(k), k === 0 ? "1st (top)" : (k + 1) + (k === 1 ? "nd" : k === 2 ? "rd" : "th"));
    option(select, "all", "all");
    $("#rank-field").hidden = maxRank === 0;
    classOptions(field("predicted"), imgPred);
    classOptions(field("true"), imgTrue);
    $("#true-field").hidden = !D.labels;
    $("#correct-field").hidden = !D.labels;
    if (!D.labels) { defaults.sort = "prob-desc"; }
    select = field("cmap");
    Object.keys(D.colormaps).forEach(function (name) { option(select, name, name); });
  }
  function classOptions(select, values) {
    var counts = {};
    for (var i = 0; i < nImages; i++) if (values[i] >= 0) counts[values[i]] = (counts[values[i]] || 0) + 1;
    option(select, "", "any");
    Object.keys(counts).map(Number)
      .sort(function (a, b) { return className(a).localeCompare(className(b)); })
      .forEach(function (index) { option(select, String(index), className(index) + "  (" + counts[index] + ")"); });
  }

  function readHash() {
    var out = {};
    var text = location.hash.replace(/^#/, "");
    if (!text) return out;
    text.split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq > 0) {
        try { out[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1)); } catch (e) { /* a bad hash is ignored */ }
      }
    });
    return out;
  }
  function writeHash() {
    var parts = [];
    Object.keys(defaults).forEach(function (key) {
      if (state[key] !== defaults[key]) parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(state[key]));
    });
    var hash = parts.length ? "#" + parts.join("&") : "";
    if (hash !== location.hash && !(hash === "" && location.hash === "")) {
      try { history.replaceState(null, "", hash || location.pathname + location.search); } catch (e) { /* file:// in some browsers */ }
    }
  }
  function setControl(name, value) {
    var control = field(name);
    if (!control) return;
    control.value = value;
    if (control.value !== value) control.value = defaults[name]; // a value the select does not have
    state[name] = control.value;
  }
  function loadState() {
    var fromHash = readHash();
    Object.keys(defaults).forEach(function (key) {
      var value = fromHash[key] !== undefined ? fromHash[key] : defaults[key];
      if (key === "view") state.view = value; else setControl(key, value);
    });
  }

  // ---------------------------------------------------------------- filtering and sorting
  var matches = new Int32Array(0);
  function number(value, fallback) { var x = parseFloat(value); return isNaN(x) ? fallback : x; }
  function applyFilters() {
    var method = state.method === "all" ? -1 : parseInt(state.method, 10);
    var rank = state.rank === "all" ? -1 : parseInt(state.rank, 10);
    var predicted = state.predicted === "" ? -2 : parseInt(state.predicted, 10);
    var truth = state["true"] === "" ? -2 : parseInt(state["true"], 10);
    var correct = state.correct === "correct" ? 1 : state.correct === "wrong" ? 0 : -2;
    var pmin = number(state.pmin, 0), pmax = number(state.pmax, 1);
    var byProb = pmin > 0 || pmax < 1;
    var words = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length && !pathsLower) pathsLower = I.path.map(function (p) { return p.toLowerCase(); });
    var out = new Int32Array(nRows), n = 0;
    for (var row = 0; row < nRows; row++) {
      if (method >= 0 && rowMethod[row] !== method) continue;
      if (rank >= 0 && rowRank[row] !== rank) continue;
      var image = rowImage[row];
      if (predicted !== -2 && imgPred[image] !== predicted) continue;
      if (truth !== -2 && imgTrue[image] !== truth) continue;
      if (correct !== -2 && imgCorrect[image] !== correct) continue;
      if (byProb) {
        var p = rowProb[row];
        if (isNaN(p) || p < pmin || p > pmax) continue;
      }
      if (words.length) {
        var path = pathsLower[image], ok = true;
        for (var w = 0; w < words.length && ok; w++) ok = path.indexOf(words[w]) >= 0;
        if (!ok) continue;
      }
      out[n++] = row;
    }
    matches = sortRows(out.subarray(0, n), state.sort);
    var count = $("#count");
    count.textContent = String(n);
    var oneEach = method >= 0 && (rank >= 0 || maxRank === 0);
    $("#count-unit").textContent = oneEach ? (n === 1 ? "image" : "images") : (n === 1 ? "map" : "maps");
    $("#count-of").textContent = "match the filters, of " + plural(oneEach ? countImages(method, rank) : nRows, oneEach ? "image" : "map");
    $("#empty").hidden = n > 0;
    $("#grid-scroll").scrollTop = 0;
    layout(true);
  }
  var imageTotals = {};
  function countImages(method, rank) {
    var key = method + ":" + rank;
    if (imageTotals[key] === undefined) {
      var n = 0;
      for (var row = 0; row < nRows; row++) if (rowMethod[row] === method && (rank < 0 || rowRank[row] === rank)) n++;
      imageTotals[key] = n;
    }
    return imageTotals[key];
  }
  function sortRows(rows, how) {
    var keys = new Float64Array(nRows);
    var descending = how.slice(-5) === "-desc";
    var source = how.indexOf("prob") === 0 ? rowProb : how.indexOf("score") === 0 ? rowScore : null;
    var list = Array.prototype.slice.call(rows);
    if (source === null) {
      list.sort(function (a, b) { return imgPathRank[rowImage[a]] - imgPathRank[rowImage[b]] || rowMethod[a] - rowMethod[b] || rowRank[a] - rowRank[b]; });
    } else {
      var missing = descending ? -Infinity : Infinity;
      for (var i = 0; i < list.length; i++) { var v = source[list[i]]; keys[list[i]] = isNaN(v) ? missing : v; }
      list.sort(function (a, b) {
        var d = descending ? keys[b] - keys[a] : keys[a] - keys[b];
        return d || imgPathRank[rowImage[a]] - imgPathRank[rowImage[b]] || a - b;
      });
    }
    return Int32Array.from(list);
  }

  // ---------------------------------------------------------------- the grid (virtual scrolling)
  var grid = $("#grid"), spacer = $("#grid-spacer"), scroller = $("#grid-scroll");
  var geometry = { columns: 1, cardW: 220, cardH: 300, frameH: 165, gap: 14 };
  var shown = new Map(); // position in matches -> card element
  var GAP = 14, META = 74;
  function measure() {
    var width = scroller.clientWidth - 2 * GAP;
    var target = number(state.size, 220);
    var columns = Math.max(1, Math.floor((width + GAP) / (target + GAP)));
    var cardW = Math.floor((width - (columns - 1) * GAP) / columns);
    var frameH = Math.round(cardW * 0.75);
    geometry = { columns: columns, cardW: cardW, frameH: frameH, cardH: frameH + META, gap: GAP };
  }
  function layout(rebuild) {
    if (state.view !== "grid") return;
    var before = geometry.cardW + "x" + geometry.columns;
    measure();
    if (rebuild || before !== geometry.cardW + "x" + geometry.columns) {
      shown.forEach(function (card) { card.remove(); });
      shown.clear();
    }
    var rows = Math.ceil(matches.length / geometry.columns);
    spacer.style.height = (rows * (geometry.cardH + GAP) + GAP) + "px";
    render();
  }
  function render() {
    var top = scroller.scrollTop, height = scroller.clientHeight;
    var rowH = geometry.cardH + GAP;
    var firstRow = Math.max(0, Math.floor((top - GAP) / rowH) - 1);
    var lastRow = Math.floor((top + height) / rowH) + 1;
    var first = firstRow * geometry.columns;
    var last = Math.min(matches.length, (lastRow + 1) * geometry.columns);
    shown.forEach(function (card, position) {
      if (position < first || position >= last) { card.remove(); shown.delete(position); }
    });
    for (var position = first; position < last; position++) {
      if (shown.has(position)) continue;
      var card = makeCard(matches[position], position);
      var column = position % geometry.columns, row = Math.floor(position / geometry.columns);
      card.style.transform = "translate(" + (GAP + column * (geometry.cardW + GAP)) + "px," + (GAP + row * rowH) + "px)";
      card.style.width = geometry.cardW + "px";
      card.style.height = geometry.cardH + "px";
      grid.appendChild(card);
      shown.set(position, card);
    }
  }
  var scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; render(); });
  }

  function makeCard(row, position) {
    var image = rowImage[row], method = rowMethod[row], rank = rowRank[row];
    var card = el("div", "card");
    card.setAttribute("data-image-id", String(I.id[image]));
    card.setAttribute("data-row", String(row));
    card.tabIndex = 0;
    card._position = position;
    var wrong = imgCorrect[image] === 0;
    if (wrong) card.classList.add("wrong");
    var frame = el("div", "frame");
    frame.style.height = geometry.frameH + "px";
    frame.appendChild(picture(image, method, rank, geometry.cardW, geometry.frameH, false));
    var tags = el("div", "tags");
    if (state.method === "all" && methods.length > 1) tags.appendChild(el("span", "tag", methods[method].name));
    if (wrong) tags.appendChild(el("span", "tag bad", "misclassified"));
    frame.appendChild(tags);
    card.appendChild(frame);

    var meta = el("div", "meta");
    var path = el("div", "path", I.relpath[image]);
    path.title = I.path[image];
    meta.appendChild(path);
    var pred = el("div", "pred");
    pred.appendChild(el("span", "name", className(imgPred[image])));
    var p = I.predProb[image];
    pred.appendChild(el("span", "prob", p === null ? "" : p.toFixed(2)));
    meta.appendChild(pred);
    var bar = el("div", "bar"), fill = el("i");
    fill.style.width = (p === null ? 0 : Math.round(p * 100)) + "%";
    bar.appendChild(fill);
    meta.appendChild(bar);
    var sub = el("div", "sub");
    if (imgTrue[image] >= 0) {
      sub.appendChild(el("span", "muted", "true "));
      sub.appendChild(el("span", wrong ? "truth bad" : "truth", className(imgTrue[image])));
      if (imgCorrect[image] === 1) sub.appendChild(el("span", "check", " ✓"));
    }
    if (rowClass[row] !== imgPred[image]) {
      if (sub.childNodes.length) sub.appendChild(el("span", "muted", " · "));
      sub.appendChild(el("span", "muted", "map of "));
      sub.appendChild(el("span", null, className(rowClass[row]) + " " + fmt(rowProb[row], 2)));
    }
    meta.appendChild(sub);
    card.appendChild(meta);
    return card;
  }

  // ---------------------------------------------------------------- detail view
  var detailPosition = -1;
  function openDetail(position) {
    if (position < 0 || position >= matches.length) return;
    detailPosition = position;
    var row = matches[position], image = rowImage[row], rank = rowRank[row];
    var box = $("#detail");
    box.hidden = false;
    $("#detail-path").textContent = I.relpath[image];
    $("#detail-path").title = I.path[image];
    var large = $("#detail-large");
    large.replaceChildren();
    var boxW = Math.min(720, window.innerWidth * 0.55), boxH = Math.min(520, window.innerHeight * 0.52);
    large.appendChild(picture(image, rowMethod[row], rank, boxW, boxH, true));
    var caption = el("div", "caption");
    caption.appendChild(el("strong", null, methods[rowMethod[row]].name));
    caption.appendChild(el("span", "muted", "  layer " + methods[rowMethod[row]].layer + "  ·  map of " + className(rowClass[row])));
    large.appendChild(caption);

    var strip = $("#detail-methods");
    strip.replaceChildren();
    methods.forEach(function (m, j) {
      var other = findRow(image, j, rank);
      if (other < 0) return;
      var tile = el("figure", "method-tile" + (j === rowMethod[row] ? " current" : ""));
      tile.appendChild(picture(image, j, rank, 200, 150, false));
      var label = el("figcaption");
      label.appendChild(el("strong", null, m.name));
      label.appendChild(el("span", "muted", " " + m.layer));
      label.appendChild(el("div", "muted", "score " + fmt(rowScore[other], 3)));
      tile.appendChild(label);
      strip.appendChild(tile);
    });

    var verdict = $("#detail-verdict");
    verdict.replaceChildren();
    var line = el("div", "verdict-line");
    line.appendChild(el("span", "muted", "predicted "));
    line.appendChild(el("strong", null, className(imgPred[image])));
    if (I.predProb[image] !== null) line.appendChild(el("span", "prob", " " + I.predProb[image].toFixed(3)));
    verdict.appendChild(line);
    if (imgTrue[image] >= 0) {
      line = el("div", "verdict-line");
      line.appendChild(el("span", "muted", "true "));
      line.appendChild(el("strong", null, className(imgTrue[image])));
      line.appendChild(el("span", imgCorrect[image] === 1 ? "tag good" : "tag bad", imgCorrect[image] === 1 ? "correct" : "misclassified"));
      verdict.appendChild(line);
    }

    var body = $("#detail-classes tbody");
    body.replaceChildren();
    (rowsOfImage[image] || []).forEach(function (r) {
      var tr = el("tr");
      if (r === row) tr.className = "current";
      tr.appendChild(el("td", null, methods[rowMethod[r]].name));
      tr.appendChild(el("td", null, String(rowRank[r] + 1)));
      tr.appendChild(el("td", null, className(rowClass[r])));
      tr.appendChild(el("td", "num", fmt(rowScore[r], 3)));
      tr.appendChild(el("td", "num", fmt(rowProb[r], 3)));
      body.appendChild(tr);
    });

    var facts = $("#detail-facts");
    facts.replaceChildren();
    addFact(facts, "path", I.path[image]);
    addFact(facts, "image id", String(I.id[image]));
    addFact(facts, "size", (I.width[image] || "?") + " × " + (I.height[image] || "?"));
    methods.forEach(function (m) { addFact(facts, "layer (" + m.name + ")", m.layer); });

    var files = $("#detail-files");
    files.replaceChildren();
    if (I.photo[image]) addLink(files, "photo", I.photo[image]);
    if (I.thumb[image] !== null) addLink(files, "thumbnail", thumbUrl(image));
    (rowsOfImage[image] || []).forEach(function (r) {
      if (R.overlay[r]) addLink(files, "overlay " + methods[rowMethod[r]].name + " #" + (rowRank[r] + 1), R.overlay[r]);
    });
    (rowsOfImage[image] || []).forEach(function (r) {
      var li = el("li");
      li.appendChild(el("span", "muted", "raw map "));
      li.appendChild(el("code", null, "maps.zarr/" + methods[rowMethod[r]].name + "[" + I.id[image] + ", " + rowRank[r] + "]"));
      files.appendChild(li);
    });
    $("#detail-prev").disabled = position === 0;
    $("#detail-next").disabled = position === matches.length - 1;
    $("#detail-close").focus();
  }
  function addFact(list, key, value) { list.appendChild(el("dt", null, key)); list.appendChild(el("dd", null, value)); }
  function addLink(list, label, url) {
    var li = el("li"), a = el("a", null, label);
    a.href = url; // a relative, percent-encoded path written by camlens
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    li.appendChild(a);
    list.appendChild(li);
  }
  function closeDetail() {
    $("#detail").hidden = true;
    $("#detail-large").replaceChildren();
    $("#detail-methods").replaceChildren();
    var card = shown.get(detailPosition);
    detailPosition = -1;
    if (card) card.focus();
  }

  // ---------------------------------------------------------------- classes and run pages
  function renderClasses() {
    var body = $("#classes-table tbody");
    body.replaceChildren();
    var method = state.method === "all" ? 0 : parseInt(state.method, 10);
    $("#classes-note").textContent = (D.groupBy === "true" ? "Grouped by true class" : "No true classes in this run: grouped by predicted class") +
      ". Mean map: the average of the class's normalised " + methods[method].name + " maps (top class), in the map's own resolution. Click a class to see its images.";
    D.classes.forEach(function (group) {
      var tr = el("tr", "clickable");
      tr.appendChild(el("td", "name", className(group.index)));
      tr.appendChild(el("td", "num", String(group.images)));
      var accuracy = el("td");
      if (group.accuracy !== null) {
        var bar = el("div", "acc"), fill = el("i");
        fill.style.width = Math.round(group.accuracy * 100) + "%";
        if (group.accuracy < 0.5) bar.classList.add("low");
        bar.appendChild(fill);
        accuracy.appendChild(bar);
        accuracy.appendChild(el("span", "num", (100 * group.accuracy).toFixed(0) + "%  (" + group.correct + "/" + group.images + ")"));
      } else {
        accuracy.appendChild(el("span", "muted", "no labels"));
      }
      tr.appendChild(accuracy);
      var confused = el("td", "muted", group.confusedWith.map(function (c) { return className(c[0]) + " (" + c[1] + ")"; }).join(", "));
      tr.appendChild(confused);
      var mapCell = el("td");
      var mean = group.maps[String(method)];
      if (mean) {
        var canvas = el("canvas", "heat mean");
        canvas.width = mean.w; canvas.height = mean.h;
        canvas._values = mapFromBase64(mean.data);
        paint(canvas);
        mapCell.appendChild(canvas);
      }
      tr.appendChild(mapCell);
      tr.addEventListener("click", function () {
        setControl(D.groupBy === "true" ? "true" : "predicted", String(group.index));
        showView("grid");
        applyFilters();
        writeHash();
      });
      body.appendChild(tr);
    });
  }
  function renderRun() {
    var list = $("#run-info");
    list.replaceChildren();
    Object.keys(D.run).forEach(function (key) { addFact(list, key, D.run[key]); });
    addFact(list, "report written", D.generated);
    var body = $("#skipped-table tbody");
    body.replaceChildren();
    D.skipped.forEach(function (s) {
      var tr = el("tr");
      tr.appendChild(el("td", "path", s.path));
      tr.appendChild(el("td", null, s.error));
      body.appendChild(tr);
    });
    $("#skipped-title").textContent = D.skipped.length ? "Skipped images (" + D.skipped.length + ")" : "No image was skipped";
    $("#skipped-table").hidden = !D.skipped.length;
  }
  function showView(view) {
    state.view = view;
    ["grid", "classes", "run"].forEach(function (name) { $("#" + name + "-view").hidden = name !== view; });
    document.querySelectorAll("#tabs button").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-view") === view); });
    if (view === "classes") renderClasses();
    if (view === "run") renderRun();
    if (view === "grid") layout(true);
  }

  // ---------------------------------------------------------------- display settings
  function applyDisplay() {
    var opacity = Math.min(1, Math.max(0, number(state.opacity, 0.5)));
    document.documentElement.style.setProperty("--heat-opacity", String(opacity));
    $("#opacity-value").textContent = opacity.toFixed(2);
    var next = D.colormaps[state.cmap] || D.colormaps.jet;
    if (next !== lut) { lut = next; repaintAll(); }
  }

  // ---------------------------------------------------------------- wiring
  function start() {
    document.title = D.title;
    $("#run-title").textContent = D.title.replace(/^camlens report: /, "");
    var facts = $("#run-facts");
    if (D.model) facts.appendChild(el("div", null, "model " + D.model));
    facts.appendChild(el("div", null, plural(nImages, "image") + " · " + plural(methods.length, "method")));
    if (D.labels) {
      var labelled = 0, right = 0;
      for (var i = 0; i < nImages; i++) if (imgCorrect[i] >= 0) { labelled++; right += imgCorrect[i]; }
      if (labelled) facts.appendChild(el("div", null, "accuracy " + (100 * right / labelled).toFixed(1) + "% (" + right + "/" + labelled + ")"));
    }
    if (D.skipped.length) facts.appendChild(el("div", "bad", plural(D.skipped.length, "image") + " skipped"));
    $("#generated").textContent = "camlens report · " + D.generated;
    fillControls();
    loadState();
    applyDisplay();
    drawPreview();

    filterNames.forEach(function (name) {
      var control = field(name);
      var handler = function () { state[name] = control.value; applyFilters(); writeHash(); };
      control.addEventListener(name === "q" || name === "pmin" || name === "pmax" ? "input" : "change", handler);
    });
    displayNames.forEach(function (name) {
      var control = field(name);
      control.addEventListener("input", function () {
        state[name] = control.value;
        if (name === "size") layout(true); else applyDisplay();
        writeHash();
      });
    });
    $("#clear").addEventListener("click", function () {
      filterNames.forEach(function (name) { setControl(name, defaults[name]); });
      applyFilters();
      writeHash();
    });
    document.querySelectorAll("#tabs button").forEach(function (button) {
      button.addEventListener("click", function () { showView(button.getAttribute("data-view")); writeHash(); });
    });
    scroller.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", function () { layout(false); });
    grid.addEventListener("click", function (event) {
      var card = event.target.closest(".card");
      if (card) openDetail(card._position);
    });
    grid.addEventListener("keydown", function (event) {
      var card = event.target.closest(".card");
      if (card && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); openDetail(card._position); }
    });
    $("#detail-close").addEventListener("click", closeDetail);
    $("#detail-prev").addEventListener("click", function () { openDetail(detailPosition - 1); });
    $("#detail-next").addEventListener("click", function () { openDetail(detailPosition + 1); });
    $("#detail").addEventListener("click", function (event) { if (event.target === $("#detail")) closeDetail(); });
    document.addEventListener("keydown", function (event) {
      if ($("#detail").hidden) return;
      if (event.key === "Escape") closeDetail();
      else if (event.key === "ArrowLeft") openDetail(detailPosition - 1);
      else if (event.key === "ArrowRight") openDetail(detailPosition + 1);
    });
    showView(["grid", "classes", "run"].indexOf(state.view) >= 0 ? state.view : "grid");
    applyFilters();
    window.camlensReadyAt = performance.now(); // milliseconds from the start of navigation
    document.body.setAttribute("data-ready", "1");
  }
  start();
})();
