"""What the homes tell the platform's registry during a run, through the API, as the home's head: hospital
stays, deaths, and (for the subsidy scenarios) a second registration of a person or a registered elder who
is not there. Each action is done once; its key is kept in the run's state so a resumed run does not
repeat it."""

from __future__ import annotations

from typing import Any

import httpx

from eldercare.simulators.errors import ApiError, SimError
from eldercare.simulators.run.clock import iso
from eldercare.simulators.run.incidents import Happening
from eldercare.simulators.run.scene import Scene


class Registrar:
    def __init__(self, scene: Scene, *, base: str) -> None:
        self.scene = scene
        self.base = base.rstrip("/")
        self._http = httpx.Client(timeout=60)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def _head(self, inst_key: str) -> str:
        token = self._tokens.get(inst_key)
        if token is None:
            inst = self.scene.institution(inst_key)
            username = inst.staff[0].username
            password = self.scene.world.issued.institutions[inst_key].users[username][1]
            token = str(
                self._call("", "POST", "/api/v1/auth/login", {"username": username, "password": password})["token"]
            )
            self._tokens[inst_key] = token
        return token

    def _call(self, token: str, method: str, path: str, body: object = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            reply = self._http.request(method, self.base + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SimError(f"{method} {path}: the API at {self.base} does not answer ({exc})") from exc
        if reply.status_code >= 400:
            try:
                doc = reply.json()
            except ValueError:
                doc = {"detail": reply.text[:200]}
            fields = [(str(e.get("field")), str(e.get("reason"))) for e in doc.get("errors", []) or []]
            detail = str(doc.get("detail"))
            raise ApiError(method=method, path=path, status=reply.status_code, detail=detail, fields=fields)
        answer: dict[str, Any] = reply.json() if reply.content else {}
        return answer

    def _resident_id(self, person: str) -> int:
        inst = self.scene.elders[person].institution
        return self.scene.world.issued.institutions[inst].persons[person][0]

    def hospital_start(self, h: Happening) -> dict[str, Any]:
        assert h.person is not None
        token = self._head(h.institution)
        stay = self._call(
            token,
            "POST",
            f"/api/v1/residents/{self._resident_id(h.person)}/hospital-stays",
            {"hospital": str(h.detail.get("hospital", "宜昌市中心人民医院")), "start": iso(h.t)},
        )
        return {"stay_id": int(stay["id"])}

    def hospital_end(self, h: Happening, stay_id: int) -> dict[str, Any]:
        assert h.until is not None
        self._call(self._head(h.institution), "POST", f"/api/v1/hospital-stays/{stay_id}/end", {"at": iso(h.until)})
        return {"stay_id": stay_id}

    def death(self, h: Happening) -> dict[str, Any]:
        assert h.person is not None
        body = {
            "died_at": iso(h.t),
            "place": str(h.detail.get("place", "家中")),
            "source": h.detail.get("source", "funeral_data"),
        }
        self._call(self._head(h.institution), "POST", f"/api/v1/residents/{self._resident_id(h.person)}/death", body)
        return {"recorded": True}

    def register(self, h: Happening) -> dict[str, Any]:
        """``twin``: the elder ``h.person`` registered again in ``detail.home`` (another institution) and
        admitted to one of its empty beds; ``ghost``: a made-up elder (``detail.name``, ``detail.id_number``)
        registered and admitted to an empty bed of ``h.institution``. Admitted at ``h.t``."""
        inst_key = str(h.detail["home"])
        inst = self.scene.institution(inst_key)
        issued = self.scene.world.issued.institutions[inst_key]
        token = self._head(inst_key)
        if h.kind == "twin":
            assert h.person is not None
            source = self.scene.institution(self.scene.elders[h.person].institution)
            person = next(p for p in source.persons if p.key == h.person)
            name, id_number = person.name, person.id_number
        else:
            name, id_number = str(h.detail["name"]), str(h.detail["id_number"])
        bed_key = str(h.detail["bed"])
        bed_id, bed_code = issued.beds[bed_key]
        created = self._call(
            token, "POST", f"/api/v1/institutions/{issued.id}/residents", {"name": name, "id_number": id_number}
        )
        self._call(token, "POST", f"/api/v1/residents/{created['id']}/admit", {"bed_id": bed_id, "at": iso(h.t)})
        label = next(b.label for b in inst.beds if b.key == bed_key)
        return {
            "registered_in": inst.code,
            "registered_person": created["person_code"],
            "registered_bed": bed_code,
            "registered_bed_label": label,
        }
