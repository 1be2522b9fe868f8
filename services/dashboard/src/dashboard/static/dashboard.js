// cardstream dashboard: polls /api/dashboard and draws every panel with the vendored Chart.js.
// Served by the service itself (no CDN) under a Content-Security-Policy without inline script.
"use strict";

(function () {
  const FRAUD = "#d62839";
  const FRAUD_FILL = "rgba(214, 40, 57, 0.75)";
  const LEGIT_FILL = "rgba(58, 110, 165, 0.30)";
  const VOLUME = "rgba(58, 110, 165, 0.55)";
  const MUTED = "#5b6b86";
  const GRID = "#eef1f6";
  // Contiguous United States; cells elsewhere (AK, HI, territories) are counted in a note.
  const MAP_BOUNDS = { west: -125.5, east: -66.0, south: 24.0, north: 49.8 };

  const charts = {};
  let borders = null;
  let refreshMs = 5000;
  let timer = null;

  // Exact formatting of the strings the service sends (amounts are exact decimal strings).
  function groupDigits(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function formatCount(n) {
    return n === null || n === undefined ? "–" : groupDigits(String(n));
  }
  function formatAmount(text) {
    if (text === null || text === undefined) return "–";
    const negative = text.startsWith("-");
    const [whole, fraction = ""] = text.replace("-", "").split(".");
    return (negative ? "-$" : "$") + groupDigits(whole) + "." + (fraction + "00").slice(0, 2);
  }
  function formatRate(rate) {
    return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(2) + "%";
  }
  function formatSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return formatSeconds(seconds) + " ago";
  }
  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString("en-GB", { hour12: false }) : "–";
  }

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  function setTile(id, level) {
    const el = document.getElementById(id);
    if (el) el.className = "tile" + (level ? " " + level : "");
  }

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 11;
  Chart.defaults.color = MUTED;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 10;
  Chart.defaults.datasets.bar.maxBarThickness = 36;

  // Draws the state borders under the points, in the scatter's own lat/long coordinates.
  const bordersPlugin = {
    id: "usBorders",
    beforeDatasetsDraw(chart) {
      if (!borders) return;
      const { ctx, chartArea, scales } = chart;
      ctx.save();
      ctx.beginPath();
      ctx.rect(chartArea.left, chartArea.top, chartArea.width, chartArea.height);
      ctx.clip();
      ctx.fillStyle = "#f6f8fb";
      ctx.fillRect(chartArea.left, chartArea.top, chartArea.width, chartArea.height);
      for (const [lines, style, width] of borders) {
        ctx.strokeStyle = style;
        ctx.lineWidth = width;
        ctx.beginPath();
        for (const line of lines) {
          line.forEach(([lon, lat], i) => {
            const x = scales.x.getPixelForValue(lon);
            const y = scales.y.getPixelForValue(lat);
            if (i === 0) ctx.moveTo(x, y);
            else ctx.lineTo(x, y);
          });
        }
        ctx.stroke();
      }
      ctx.restore();
    },
  };

  function barLineOptions(rightTitle) {
    return {
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "top", align: "end" } },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { beginAtZero: true, grid: { color: GRID }, title: { display: true, text: "transactions" } },
        y1: {
          beginAtZero: true,
          position: "right",
          grid: { display: false },
          title: { display: true, text: rightTitle },
        },
      },
    };
  }

  function makeCharts() {
    charts.map = new Chart(document.getElementById("chart-map"), {
      type: "scatter",
      data: { datasets: [] },
      plugins: [bordersPlugin],
      options: {
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label(item) {
                const p = item.raw;
                return `${p.state} (${p.y}, ${p.x}): ${formatCount(p.transactions)} transactions, ${formatCount(p.fraud)} fraud`;
              },
            },
          },
        },
        scales: {
          x: { type: "linear", min: MAP_BOUNDS.west, max: MAP_BOUNDS.east, display: false },
          y: { type: "linear", min: MAP_BOUNDS.south, max: MAP_BOUNDS.north, display: false },
        },
      },
    });
    charts.category = new Chart(document.getElementById("chart-category"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        indexAxis: "y",
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              afterLabel(item) {
                const row = charts.category.$rows[item.dataIndex];
                return `rate ${formatRate(row.fraud_rate)} of ${formatCount(row.transactions)} transactions`;
              },
            },
          },
        },
        scales: {
          x: { beginAtZero: true, grid: { color: GRID } },
          y: { grid: { display: false }, ticks: { autoSkip: false } },
        },
      },
    });
    charts.alerts = new Chart(document.getElementById("chart-alerts"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        indexAxis: "y",
        plugins: { legend: { position: "top", align: "end" } },
        scales: {
          x: { stacked: true, beginAtZero: true, grid: { color: GRID } },
          y: { stacked: true, grid: { display: false }, ticks: { autoSkip: false } },
        },
      },
    });
    charts.daily = new Chart(document.getElementById("chart-daily"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: barLineOptions("fraud"),
    });
    charts.hourly = new Chart(document.getElementById("chart-hourly"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: barLineOptions("fraud"),
    });
    charts.hourOfDay = new Chart(document.getElementById("chart-hour-of-day"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: barLineOptions("fraud rate %"),
    });
    charts.freshness = new Chart(document.getElementById("chart-freshness"), {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: (() => {
        const o = barLineOptions("seconds");
        o.scales.y.title.text = "rows loaded";
        return o;
      })(),
    });
  }

  function volumeDatasets(rows, fraudLabel) {
    return [
      {
        type: "bar",
        label: "transactions",
        data: rows.map((r) => r.transactions),
        backgroundColor: VOLUME,
        yAxisID: "y",
        order: 2,
      },
      {
        type: "line",
        label: fraudLabel,
        data: rows.map((r) => r.fraud_transactions),
        borderColor: FRAUD,
        backgroundColor: FRAUD,
        pointRadius: rows.length > 60 ? 0 : 2,
        borderWidth: 2,
        tension: 0.25,
        yAxisID: "y1",
        order: 1,
      },
    ];
  }

  function renderKpis(panels) {
    const t = panels.totals;
    setText("kpi-transactions", formatCount(t.transactions));
    setText("kpi-transactions-sub", `${formatCount(t.unlabelled_transactions)} not yet labelled`);
    setText("kpi-amount", formatAmount(t.amount));
    setText("kpi-amount-sub", `fraud-labelled ${formatAmount(t.fraud_amount)}`);
    setText("kpi-fraud", formatCount(t.fraud_transactions));
    setText("kpi-fraud-sub", `fraud rate ${formatRate(t.fraud_rate)} of labelled`);
    setText("kpi-states", formatCount(t.states));
    setText("kpi-states-sub", `${formatCount(panels.locations.total_cells)} locations on record`);
    const range = t.first_transaction_at
      ? `${t.first_transaction_at.slice(0, 10)} → ${t.last_transaction_at.slice(0, 16).replace("T", " ")}`
      : "no transactions yet";
    setText("data-range", range);
  }

  function renderTop(tableId, rows, key) {
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "No fraud-labelled transactions yet";
      tr.append(td);
      body.append(tr);
      return;
    }
    const top = rows[0].fraud_transactions || 1;
    rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      const cells = [
        ["rank", String(i + 1)],
        ["name", row[key]],
        ["num fraud", formatCount(row.fraud_transactions)],
        ["num", formatAmount(row.fraud_amount)],
        ["num", formatRate(row.fraud_rate)],
      ];
      for (const [cls, text] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        if (cls === "name") {
          td.title = text;
          const bar = document.createElement("span");
          bar.className = "bar";
          bar.style.width = `${Math.max(4, (100 * row.fraud_transactions) / top)}%`;
          td.append(bar);
        }
        tr.append(td);
      }
      body.append(tr);
    });
  }

  function renderCases(rows) {
    const body = document.querySelector("#table-latest-fraud tbody");
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 7;
      td.textContent = "No fraud-labelled transactions yet";
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      const cells = [
        ["", row.trans_date_trans_time.replace("T", " ")],
        ["mono", row.card_masked],
        ["name", row.merchant],
        ["", row.category],
        ["", row.state],
        ["num fraud", formatAmount(row.amt)],
        ["mono", row.trans_num],
      ];
      for (const [cls, text] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  const SEVERITY_COLOURS = { high: "#d62839", medium: "#e0a100", low: "#7a9cc6" };

  function renderAlerts(open, latest) {
    const rules = [...new Set(open.map((r) => r.rule))].sort();
    const datasets = ["high", "medium", "low"].map((severity) => ({
      label: severity,
      data: rules.map((rule) => {
        const row = open.find((r) => r.rule === rule && r.severity === severity);
        return row ? row.open_alerts : 0;
      }),
      backgroundColor: SEVERITY_COLOURS[severity],
      borderRadius: 3,
    }));
    charts.alerts.data.labels = rules;
    charts.alerts.data.datasets = datasets;
    charts.alerts.update();
    const total = open.reduce((sum, r) => sum + r.open_alerts, 0);
    setText("alerts-open-total", `${formatCount(total)} open`);

    const body = document.querySelector("#table-latest-alerts tbody");
    body.replaceChildren();
    if (latest.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 9;
      td.textContent = "No alerts raised yet";
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const row of latest) {
      const tr = document.createElement("tr");
      tr.title = `alert ${row.alert_id} · evidence ${row.evidence}`;
      const cells = [
        ["", clock(row.created_at)],
        ["", row.rule],
        ["badge", row.severity],
        ["num", row.score],
        ["", row.status],
        ["mono", row.card_masked],
        ["name", row.merchant],
        ["num", formatAmount(row.amt)],
        ["", row.trans_date_trans_time.replace("T", " ")],
      ];
      for (const [cls, text] of cells) {
        const td = document.createElement("td");
        if (cls === "badge") {
          const badge = document.createElement("span");
          badge.className = `badge ${text}`;
          badge.textContent = text;
          td.append(badge);
        } else {
          td.className = cls;
          td.textContent = text;
        }
        tr.append(td);
      }
      body.append(tr);
    }
  }

  function renderMap(locations) {
    const inside = [];
    let outside = 0;
    let outsideFraud = 0;
    for (const c of locations.cells) {
      const lat = Number(c.lat);
      const lon = Number(c.long);
      const onMap =
        lon >= MAP_BOUNDS.west && lon <= MAP_BOUNDS.east && lat >= MAP_BOUNDS.south && lat <= MAP_BOUNDS.north;
      if (onMap) inside.push({ x: lon, y: lat, state: c.state, transactions: c.transactions, fraud: c.fraud_transactions });
      else {
        outside += 1;
        outsideFraud += c.fraud_transactions;
      }
    }
    const maxTx = Math.max(1, ...inside.map((p) => p.transactions));
    const maxFraud = Math.max(1, ...inside.map((p) => p.fraud));
    charts.map.data.datasets = [
      {
        label: "legitimate / unlabelled",
        data: inside,
        backgroundColor: LEGIT_FILL,
        borderColor: "rgba(58, 110, 165, 0.55)",
        borderWidth: 0.5,
        pointRadius: inside.map((p) => 2 + 9 * Math.sqrt(p.transactions / maxTx)),
      },
      {
        label: "fraud-labelled",
        data: inside.filter((p) => p.fraud > 0),
        backgroundColor: FRAUD_FILL,
        borderColor: "#fff",
        borderWidth: 0.8,
        pointRadius: inside.filter((p) => p.fraud > 0).map((p) => 3 + 8 * Math.sqrt(p.fraud / maxFraud)),
      },
    ];
    charts.map.update();
    const capped = locations.total_cells - locations.cells.length;
    let note = `${formatCount(inside.length)} locations drawn (0.1° cells)`;
    if (outside) note += `; ${formatCount(outside)} outside the contiguous US (${formatCount(outsideFraud)} fraud)`;
    if (capped > 0) note += `; ${formatCount(capped)} quieter locations not drawn`;
    setText("map-note", note);
  }

  function renderCharts(panels) {
    const categories = panels.fraud_by_category;
    charts.category.$rows = categories;
    charts.category.data.labels = categories.map((r) => r.category);
    charts.category.data.datasets = [
      { label: "fraud", data: categories.map((r) => r.fraud_transactions), backgroundColor: FRAUD_FILL, borderRadius: 3 },
    ];
    charts.category.update();

    const daily = panels.trend_daily;
    charts.daily.data.labels = daily.map((r) => r.day);
    charts.daily.data.datasets = volumeDatasets(daily, "fraud");
    charts.daily.update();

    const hourly = panels.trend_hourly;
    charts.hourly.data.labels = hourly.map((r) => r.hour.slice(5, 13).replace("T", " ") + "h");
    charts.hourly.data.datasets = volumeDatasets(hourly, "fraud");
    charts.hourly.update();

    const hours = panels.fraud_by_hour_of_day;
    charts.hourOfDay.data.labels = hours.map((r) => String(r.hour_of_day).padStart(2, "0"));
    charts.hourOfDay.data.datasets = [
      { type: "bar", label: "transactions", data: hours.map((r) => r.transactions), backgroundColor: VOLUME, yAxisID: "y", order: 2 },
      {
        type: "line",
        label: "fraud rate %",
        data: hours.map((r) => (r.fraud_rate === null ? null : Number((r.fraud_rate * 100).toFixed(3)))),
        borderColor: FRAUD,
        backgroundColor: FRAUD,
        pointRadius: 2,
        borderWidth: 2,
        tension: 0.3,
        yAxisID: "y1",
        order: 1,
      },
    ];
    charts.hourOfDay.update();

    const minutes = panels.freshness_by_minute;
    charts.freshness.data.labels = minutes.map((r) => clock(r.minute).slice(0, 5));
    charts.freshness.data.datasets = [
      { type: "bar", label: "rows loaded", data: minutes.map((r) => r.rows_loaded), backgroundColor: VOLUME, yAxisID: "y", order: 2 },
      {
        type: "line",
        label: "receipt → load p50 (s)",
        data: minutes.map((r) => Number(r.receipt_to_load_p50_s.toFixed(2))),
        borderColor: "#1f6feb",
        backgroundColor: "#1f6feb",
        pointRadius: 2,
        borderWidth: 2,
        yAxisID: "y1",
        order: 1,
      },
    ];
    charts.freshness.update();
  }

  function renderPipeline(data) {
    const p = data.pipeline;
    const panels = data.panels;
    const unknown = (value) => value === null || value === undefined || value === "unavailable";

    const lag = p.stream_lag;
    if (unknown(lag) || lag.max_millis_behind_latest === null) {
      setText("pipe-lag", "–");
      setText("pipe-lag-sub", lag === "unavailable" ? "lag source unreachable" : "no lag reported");
      setTile("tile-lag", lag === "unavailable" ? "bad" : "");
    } else {
      const lagS = lag.max_millis_behind_latest / 1000;
      setText("pipe-lag", formatSeconds(lagS));
      setText(
        "pipe-lag-sub",
        lag.source === "writers"
          ? `${lag.shards.length} shards · ${lag.workers_reachable}/${lag.workers} writers`
          : "iterator age, CloudWatch (max over 1 min)",
      );
      setTile("tile-lag", lagS > 300 ? "bad" : lagS > 30 ? "warn" : "ok");
    }
    if (!unknown(p.stream)) {
      setText("pipe-hint", `stream ${p.stream.name}: ${p.stream.status}, ${p.stream.open_shards} open shards`);
    }

    if (unknown(p.queue)) {
      setText("pipe-waiting", "–");
      setText("pipe-waiting-sub", p.queue === "unavailable" ? "queue unreachable" : "queue not configured");
      setTile("tile-waiting", p.queue === "unavailable" ? "bad" : "");
    } else {
      setText("pipe-waiting", formatCount(p.queue.waiting));
      setText("pipe-waiting-sub", `${formatCount(p.queue.in_flight)} being loaded`);
      setTile("tile-waiting", p.queue.waiting > 100 ? "warn" : "ok");
    }

    if (unknown(p.dlq)) {
      setText("pipe-dlq", "–");
      setText("pipe-dlq-sub", p.dlq === "unavailable" ? "DLQ unreachable" : "DLQ not configured");
      setTile("tile-dlq", p.dlq === "unavailable" ? "bad" : "");
    } else {
      const depth = p.dlq.waiting + p.dlq.in_flight;
      setText("pipe-dlq", formatCount(depth));
      setText("pipe-dlq-sub", depth ? "objects failed to load: investigate" : "no failed objects");
      setTile("tile-dlq", depth ? "bad" : "ok");
    }

    if (panels) {
      const loads = panels.loads;
      setText("pipe-quarantined", formatCount(loads.rows_quarantined));
      let sub = loads.last_quarantined_at ? `latest ${ago(loads.last_quarantined_at)}` : "none so far";
      if (!unknown(p.quarantine_objects) && p.quarantine_objects.count) {
        sub += ` · ${p.quarantine_objects.count}${p.quarantine_objects.more ? "+" : ""} stream objects`;
      }
      setText("pipe-quarantined-sub", sub);
      setTile("tile-quarantined", loads.rows_quarantined ? "warn" : "ok");

      setText("pipe-last-load", loads.last_object_loaded_at ? clock(loads.last_object_loaded_at) : "–");
      setText(
        "pipe-last-load-sub",
        loads.last_object_loaded_at
          ? `${ago(loads.last_object_loaded_at)} · ${formatCount(loads.objects_loaded)} objects`
          : "nothing loaded yet",
      );
      setTile("tile-last-load", loads.last_object_loaded_at ? "ok" : "");

      const f = panels.freshness;
      setText("pipe-freshness", formatSeconds(f.receipt_to_load_p50_s));
      setText(
        "pipe-freshness-sub",
        f.recent_rows ? `p50 · p95 ${formatSeconds(f.receipt_to_load_p95_s)} · max ${formatSeconds(f.receipt_to_load_max_s)}` : "no recent loads",
      );
      const p95 = f.receipt_to_load_p95_s;
      setTile("tile-freshness", p95 === null ? "" : p95 > 300 ? "bad" : p95 > 60 ? "warn" : "ok");
    }
  }

  function renderStatus(data) {
    const dot = document.getElementById("status-dot");
    const banner = document.getElementById("banner");
    const down = data.unavailable || [];
    if (down.length) {
      banner.hidden = false;
      banner.textContent = `Some sources are unavailable: ${down.join(", ")}.` +
        (data.panels_as_of ? ` Panels show data as of ${clock(data.panels_as_of)}.` : "");
      dot.className = "dot stale";
    } else {
      banner.hidden = true;
      dot.className = "dot live";
    }
    setText("status-text", `Live · updated ${clock(data.generated_at)}`);
    setText("viewer", `signed in as ${data.viewer}`);
    setText("refresh-note", `Refreshes every ${data.refresh_interval_s} s · environment ${data.environment}`);
  }

  async function refresh() {
    let data;
    try {
      const response = await fetch("/api/dashboard", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        document.getElementById("status-dot").className = "dot down";
        setText("status-text", response.status === 401 ? "Session expired: reopen the link with a new token" : "Access denied");
        document.body.dataset.state = "refused";
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (error) {
      document.getElementById("status-dot").className = "dot down";
      setText("status-text", `Dashboard unreachable (${error.message}); retrying`);
      schedule();
      return;
    }
    refreshMs = data.refresh_interval_s * 1000;
    renderStatus(data);
    if (data.panels) {
      renderKpis(data.panels);
      renderTop("table-top-states", data.panels.top_fraud_states, "state");
      renderTop("table-top-merchants", data.panels.top_fraud_merchants, "merchant");
      renderCases(data.panels.latest_fraud);
      renderAlerts(data.panels.open_alerts, data.panels.latest_alerts);
      renderMap(data.panels.locations);
      renderCharts(data.panels);
    }
    renderPipeline(data);
    document.body.dataset.state = data.panels ? "loaded" : "no-data";
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, refreshMs);
  }

  async function loadBorders() {
    try {
      const response = await fetch("/static/vendor/us-states-10m.json");
      const us = await response.json();
      const inner = topojson.mesh(us, us.objects.states, (a, b) => a !== b).coordinates;
      const outer = topojson.mesh(us, us.objects.nation).coordinates;
      borders = [
        [inner, "#c9d3e3", 0.8],
        [outer, "#8a9bb8", 1.2],
      ];
      if (charts.map) charts.map.update();
    } catch (error) {
      // The map still works on plain axes without the outline.
      borders = null;
    }
  }

  makeCharts();
  loadBorders().finally(refresh);
})();
