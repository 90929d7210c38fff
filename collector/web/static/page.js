"use strict";
const view = document.body.dataset.view;
if (document.body.dataset.auth === "1") document.getElementById("nav").hidden = false;
function esc(s){return String(s ?? "-").replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"})[c]);}
function cards(items){return items.join("") || "<p>(无 none)</p>";}
function render(s){
  const st = s.status, up = s.uplink;
  document.getElementById("summary").innerHTML =
    `平台 Uplink: <b class="${up.connected?"on":"off"}" id="uplink">${up.connected?"已连接 connected":"断开 down"}</b>` +
    (up.link ? ` <span id="link">${esc(up.link.name)}${up.link.primary?"":" (备用 backup)"}</span>` : "") + ` · ` +
    `命令 Commands: <b class="${up.commands.state==="subscribed"?"on":up.commands.state==="off"?"":"off"}" id="commands" title="${esc(up.commands.reason)}">${esc(up.commands.state)}</b>` +
    (up.last_error && !up.last_error.old ? ` <span class="err" id="uplink-error">${esc(up.last_error.text)}</span>` : "") + ` · ` +
    `未上传 Unsent: <b id="unsent">${st.unsent}</b> · 端口 Ports ${st.ports_online}/${st.ports_total} · ` +
    `时钟偏差 Clock offset: ${st.clock_offset_ms} ms · ${esc(st.clock)}` +
    (s.web && s.web.refused ? ` · 网页拒绝 Web refused: <b id="web-refused">${Object.values(s.web.refused).reduce((a, b) => a + b, 0)}</b>` : "");
  document.getElementById("ports").innerHTML = cards(s.ports.map(p =>
    `<div class="card port ${p.online?"idle":"offline"}" id="port-${p.number}">端口 Port ${p.number} ` +
    `<b class="${p.online?"on":"off"}">${p.online?"在线 online":"离线 offline"}</b>` +
    `<br><span class="protocol">协议 Protocol: ${esc(p.title)}</span>` +
    `<br><span class="mode">方式 Mode: ${esc(p.mode_words)}</span>` +
    `<br><span class="address">${esc(p.address_words)} · ${esc(p.device)}</span>` +
    `<br><span class="sales">${p.sales} 笔 sales</span></div>`));
  document.getElementById("nozzles").innerHTML = cards(s.nozzles.map(n =>
    `<div class="card ${esc(n.state)}" id="nozzle-${esc(n.nozzle)}" data-state="${esc(n.state)}">${esc(n.nozzle)}<br><b>${esc(n.state)}</b></div>`));
  document.getElementById("tanks").innerHTML = cards(s.tanks.tanks.map(t => {
    const pct = t.capacity_l ? Math.min(100, 100 * Number(t.volume_l) / t.capacity_l) : 0;
    return `<div class="card">罐 Tank ${t.tank} (${esc(t.grade)})<div class="bar"><i data-pct="${pct.toFixed(0)}"></i></div>${esc(t.volume_l)} L</div>`;}));
  // Widths through the CSSOM: the CSP refuses style attributes in markup.
  for (const bar of document.querySelectorAll("#tanks .bar i")) bar.style.width = bar.dataset.pct + "%";
  document.getElementById("alarms").innerHTML = s.alarms.active.map(a =>
    `<li class="err">${esc(a.source)} ${esc(a.code)} ${esc(a.at)}</li>`).join("") || "<li>(无 none)</li>";
  document.getElementById("recent").innerHTML = "<tr><th>油枪 Nozzle</th><th>单号 Order</th><th>升 L</th><th>金额 Amount</th><th>时间 Time</th></tr>" +
    s.orders.map(o => `<tr class="order" data-order="${esc(o.order_no)}"><td>${esc(o.nozzle)}</td><td>${esc(o.order_no)}</td><td>${esc(o.volume)}</td><td>${esc(o.amount)}</td><td>${esc(o.ended_at)}</td></tr>`).join("");
}
async function tick(){
  try {
    const r = await fetch("/api/state", {credentials: "same-origin"});
    if (r.status === 401) { location.href = "/"; return; }
    render(await r.json());
  } catch (e) { document.getElementById("summary").textContent = "采集器无响应 collector not answering"; }
}
async function mini(){
  try {
    const s = await (await fetch("/api/status")).json();
    document.getElementById("mini").innerHTML = `端口 Ports ${s.ports_online}/${s.ports_total} · 平台 Uplink ${s.uplink_connected?"已连接 connected":"断开 down"}`;
  } catch (e) {}
}
// The charts are drawn by the collector (inline SVG); a fresh copy once a minute.
async function charts(){
  try {
    const r = await fetch("/charts", {credentials: "same-origin"});
    const old = document.getElementById("charts");
    if (r.ok && old) old.outerHTML = await r.text();
  } catch (e) {}
}
if (view === "dashboard") { document.getElementById("dash").hidden = false; tick(); setInterval(tick, 1000); setInterval(charts, 60000); }
if (view === "login") { mini(); setInterval(mini, 5000); }
// A detect running: the page looks again every 3 s until its result is there.
if (view === "detect" && document.querySelector(".running")) { setTimeout(() => location.reload(), 3000); }
